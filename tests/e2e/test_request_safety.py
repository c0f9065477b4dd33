"""Browser safety and input limits on a real server: what a hostile web page or a careless
client sends is refused with a 4xx naming the problem, and nothing of it is stored."""

from __future__ import annotations

import httpx
import pytest

from tests.server import Server, served

JSON_LIMIT = 64 * 1024
UPLOAD_LIMIT = 128 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embed_gguf, tiny_chat_gguf):
    config = {"max_json_bytes": JSON_LIMIT, "max_upload_bytes": UPLOAD_LIMIT,
              "allowed_origins": ["https://app.example"], "allowed_hosts": ["ggstack.internal"],
              "models": [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"},
                         {"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"}]}
    yield from served(tmp_path_factory.mktemp("browser"), config=config)


def vector_store_count(server: Server) -> int:
    return len(httpx.get(f"{server.url}/v1/vector_stores").json()["data"])


def test_cross_site_text_plain_post_is_refused(server):
    """What an HTML form or a no-preflight fetch from another site can send."""
    before = vector_store_count(server)
    answer = httpx.post(f"{server.url}/v1/vector_stores", content=b'{"name": "csrf"}',
                        headers={"content-type": "text/plain", "origin": "https://evil.example"})
    assert answer.status_code == 403
    assert "Origin 'https://evil.example' is not allowed" in answer.json()["detail"]
    assert vector_store_count(server) == before


def test_text_plain_json_is_415_even_without_origin(server):
    before = vector_store_count(server)
    answer = httpx.post(f"{server.url}/v1/vector_stores", content=b'{"name": "plain"}',
                        headers={"content-type": "text/plain"})
    assert answer.status_code == 415
    assert "application/json" in answer.json()["detail"]
    assert vector_store_count(server) == before


def test_dell_routes_refuse_in_their_own_error_shape(server):
    answer = httpx.post(f"{server.url}/v1/openai/embeddings", content=b'{"model": "emb", "input": "x"}',
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415
    assert answer.json()["type"] == "invalid_request_error"


def test_rebinding_host_is_refused(server):
    """DNS rebinding: the page's own name now points at 127.0.0.1, but Host still names it."""
    answer = httpx.get(f"{server.url}/v1/models", headers={"host": "evil.example"})
    assert answer.status_code == 403
    assert "Host 'evil.example'" in answer.json()["detail"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8321", "[::1]:8321", "ggstack.internal:80"])
def test_loopback_and_configured_hosts_pass(server, host):
    assert httpx.get(f"{server.url}/v1/models", headers={"host": host}).status_code == 200


def test_null_origin_is_refused(server):
    answer = httpx.get(f"{server.url}/v1/models", headers={"origin": "null"})
    assert answer.status_code == 403


def test_loopback_origin_passes_without_cors_headers(server):
    answer = httpx.get(f"{server.url}/v1/models", headers={"origin": "http://localhost:3000"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_configured_origin_gets_cors_and_preflight(server):
    origin = "https://app.example"
    answer = httpx.get(f"{server.url}/v1/models", headers={"origin": origin})
    assert answer.headers["access-control-allow-origin"] == origin
    preflight = httpx.options(f"{server.url}/v1/chat/completions",
                              headers={"origin": origin, "access-control-request-method": "POST",
                                       "access-control-request-headers": "content-type, authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_are_400_and_not_stored(server, constant):
    before = vector_store_count(server)
    body = b'{"name": "nan", "metadata": {"score": ' + constant + b"}}"
    answer = httpx.post(f"{server.url}/v1/vector_stores", content=body,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert constant.decode().lstrip("-") in answer.json()["detail"]
    assert vector_store_count(server) == before


def test_deeply_nested_json_is_400(server):
    body = b'{"name": "deep", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = httpx.post(f"{server.url}/v1/vector_stores", content=body,
                        headers={"content-type": "application/json"})
    assert answer.status_code in (400, 413)


def test_json_body_over_the_limit_is_413(server):
    body = b'{"name": "' + b"x" * JSON_LIMIT + b'"}'
    answer = httpx.post(f"{server.url}/v1/vector_stores", content=body,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert str(JSON_LIMIT) in answer.json()["detail"]


def test_chunked_json_body_over_the_limit_is_413(server):
    """No Content-Length to refuse up front: the count while reading stops it."""
    def chunks():
        yield b'{"name": "'
        for _ in range(8):
            yield b"x" * (JSON_LIMIT // 4)
        yield b'"}'

    answer = httpx.post(f"{server.url}/v1/vector_stores", content=chunks(),
                        headers={"content-type": "application/json"})
    assert answer.status_code == 413


def test_upload_over_the_limit_is_cut_off_while_streaming(server):
    """The multipart parser is stopped at the limit: the client is told long before it has sent it all."""
    total = 64 * 1024 * 1024
    sent = 0

    def body():
        nonlocal sent
        yield (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n'
               b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n')
        while sent < total:
            sent += 64 * 1024
            yield b"\0" * (64 * 1024)
        yield b"\r\n--b--\r\n"

    try:
        answer = httpx.post(f"{server.url}/v1/files", content=body(),
                            headers={"content-type": "multipart/form-data; boundary=b"}, timeout=60)
        assert answer.status_code == 413
    except httpx.TransportError:
        pass  # the server answered and closed while we were still sending, which is the point
    assert sent < total
    assert httpx.get(f"{server.url}/v1/files").json()["data"] == []


def test_declared_upload_length_over_the_limit_is_413(server):
    answer = httpx.post(f"{server.url}/v1/files", files={"file": ("a.bin", b"\0" * (UPLOAD_LIMIT * 2))},
                        data={"purpose": "assistants"})
    assert answer.status_code == 413


def test_dollar_filter_key_is_400_not_500(server):
    store = httpx.post(f"{server.url}/v1/vector_stores", json={"name": "f", "embedding_model": "emb"}).json()
    search = {"query": "hello", "filters": {"type": "eq", "key": "$and", "value": 1}}
    answer = httpx.post(f"{server.url}/v1/vector_stores/{store['id']}/search", json=search)
    assert answer.status_code == 400
    assert "$and" in answer.json()["detail"]


def test_prompt_list_times_best_of_is_capped(server):
    body = {"model": "tiny", "prompt": ["a"] * 20, "best_of": 8, "max_tokens": 1}
    answer = httpx.post(f"{server.url}/v1/completions", json=body)
    assert answer.status_code == 400
    assert "20 prompts x best_of 8" in answer.json()["detail"]


def test_too_many_file_ids_is_400(server):
    body = {"name": "many", "embedding_model": "emb", "file_ids": [f"file-{i}" for i in range(2001)]}
    answer = httpx.post(f"{server.url}/v1/vector_stores", json=body)
    assert answer.status_code == 400
    assert "at most 2000 files" in answer.json()["detail"]


def test_download_streams_with_its_length(server):
    data = bytes(range(256)) * 400
    uploaded = httpx.post(f"{server.url}/v1/files", files={"file": ("d.bin", data)},
                          data={"purpose": "assistants"}).json()
    with httpx.stream("GET", f"{server.url}/v1/files/{uploaded['id']}/content") as answer:
        assert answer.headers["content-length"] == str(len(data))
        assert answer.headers.get("transfer-encoding") is None
        assert answer.read() == data
