"""Embeddings on a real server with a tiny BERT GGUF: the openai SDK, httpx, and Dell's route."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from tests.server import Server, served

SENTENCES = ["hello world", "the cat sat on the mat", "abc def", "zebra", "numbers 123 and 456"]
DIMENSION = 32  # the tiny BERT's


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embed_gguf, tiny_chat_gguf):
    config = {"models": [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"},
                         {"identifier": "chat", "path": str(tiny_chat_gguf), "model_type": "llm"}]}
    yield from served(tmp_path_factory.mktemp("embeddings"), config=config)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_embed_gguf):
    """The model's own vocabulary, loaded in the test process, to build token-array inputs."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(tiny_embed_gguf), vocab_only=True, verbose=False)
    return lambda text: vocab.tokenize(text.encode(), add_bos=True, special=False)


def vectors(response) -> np.ndarray:
    return np.asarray([item.embedding for item in sorted(response.data, key=lambda d: d.index)])


def post(server: Server, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30)


def test_sdk_default_base64_agrees_exactly_with_float(client):
    as_float = client.embeddings.create(model="emb", input=SENTENCES, encoding_format="float")
    as_sdk_default = client.embeddings.create(model="emb", input=SENTENCES)  # the SDK asks for base64
    assert vectors(as_float).shape == (len(SENTENCES), DIMENSION)
    assert vectors(as_sdk_default).tolist() == vectors(as_float).tolist()
    assert np.allclose(np.linalg.norm(vectors(as_float), axis=1), 1.0, atol=1e-5)
    assert as_float.model == "emb" and as_float.object == "list"


def test_base64_on_the_wire_is_little_endian_float32(server):
    body = post(server, "/v1/embeddings",
                {"model": "emb", "input": "zebra", "encoding_format": "base64"}).json()
    floats = post(server, "/v1/embeddings", {"model": "emb", "input": "zebra"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(raw) == DIMENSION * 4
    assert np.frombuffer(raw, dtype="<f4").tolist() == floats["data"][0]["embedding"]


def test_batch_keeps_input_order_and_matches_single_requests(client):
    batch = client.embeddings.create(model="emb", input=SENTENCES, encoding_format="float")
    assert [item.index for item in batch.data] == list(range(len(SENTENCES)))
    singles = np.vstack([vectors(client.embeddings.create(model="emb", input=s, encoding_format="float"))
                         for s in SENTENCES])
    assert np.allclose(vectors(batch), singles, atol=1e-5)
    reversed_batch = client.embeddings.create(model="emb", input=SENTENCES[::-1], encoding_format="float")
    assert np.allclose(vectors(reversed_batch), singles[::-1], atol=1e-5)
    # distinct inputs give distinct vectors, so the order checks above mean something
    assert not np.allclose(singles[0], singles[1], atol=1e-3)


def test_usage_counts_the_real_tokens(client, tokenizer):
    response = client.embeddings.create(model="emb", input=SENTENCES)
    expected = sum(len(tokenizer(s)) for s in SENTENCES)
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected


def test_both_paths_serve_the_same_operation(server):
    a = post(server, "/v1/openai/v1/embeddings", {"model": "emb", "input": ["abc def"]}).json()
    b = post(server, "/v1/embeddings", {"model": "emb", "input": ["abc def"]}).json()
    assert a == b


def test_dimensions_truncate_and_renormalise(client):
    full = vectors(client.embeddings.create(model="emb", input=SENTENCES, encoding_format="float"))
    for encoding in ("float", openai.NOT_GIVEN):  # not given: the SDK asks for base64 and decodes it
        short = vectors(client.embeddings.create(model="emb", input=SENTENCES, dimensions=8,
                                                 encoding_format=encoding))
        assert short.shape == (len(SENTENCES), 8)
        assert np.allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
        assert np.allclose(short, full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True), atol=1e-5)
    same = vectors(client.embeddings.create(model="emb", input=SENTENCES, dimensions=DIMENSION))
    assert np.allclose(same, full, atol=1e-6)


def test_more_dimensions_than_the_model_has_is_400(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="emb", input="x", dimensions=DIMENSION + 1)
    expected = f"dimensions {DIMENSION + 1} is more than model 'emb' has ({DIMENSION})"
    assert expected in error.value.response.json()["detail"]


def test_openai_token_arrays_are_embedded(client, tokenizer):
    tokens = [tokenizer(s) for s in SENTENCES]
    by_text = vectors(client.embeddings.create(model="emb", input=SENTENCES))
    by_tokens = vectors(client.embeddings.create(model="emb", input=tokens))
    assert np.allclose(by_tokens, by_text, atol=1e-5)
    single = vectors(client.embeddings.create(model="emb", input=tokens[0]))
    assert np.allclose(single, by_text[:1], atol=1e-5)


def test_dell_token_arrays_match_the_text(server, tokenizer):
    tokens = [tokenizer(s) for s in SENTENCES]
    by_text = post(server, "/v1/openai/embeddings", {"model": "emb", "input": SENTENCES}).json()
    by_tokens = post(server, "/v1/openai/embeddings", {"model": "emb", "input": tokens}).json()
    single = post(server, "/v1/openai/embeddings", {"model": "emb", "input": tokens[1]}).json()
    text_vectors = np.asarray([d["embedding"] for d in by_text["data"]])
    assert np.allclose([d["embedding"] for d in by_tokens["data"]], text_vectors, atol=1e-5)
    assert np.allclose(single["data"][0]["embedding"], text_vectors[1], atol=1e-5)
    assert by_tokens["usage"] == by_text["usage"] == {"prompt_tokens": sum(map(len, tokens)),
                                                      "total_tokens": sum(map(len, tokens))}
    assert [d["index"] for d in by_tokens["data"]] == list(range(len(SENTENCES)))
    assert by_text["object"] == "list" and by_text["model"] == "emb"


def test_dell_dimensions_and_errors(server):
    short = post(server, "/v1/openai/embeddings", {"model": "emb", "input": "zebra", "dimensions": 4}).json()
    assert len(short["data"][0]["embedding"]) == 4
    missing = post(server, "/v1/openai/embeddings", {"model": "nope", "input": "zebra"})
    assert missing.status_code == 404
    assert missing.json()["message"] == "Model 'nope' not found"  # Dell's {message, type, param, code}
    images = post(server, "/v1/openai/embeddings", {"model": "emb", "input": "x", "images": ["aGk="]})
    assert images.status_code == 400 and images.json()["param"] == "images"
    bad_token = post(server, "/v1/openai/embeddings", {"model": "emb", "input": [10**9]})
    assert bad_token.status_code == 400 and "vocabulary" in bad_token.json()["message"]


def test_unknown_model_is_404_not_found(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.embeddings.create(model="no-such-model", input="x")
    assert "not found" in error.value.response.json()["detail"]


def test_an_llm_is_not_an_embedding_model(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="chat", input="x")
    assert "not an embedding model" in error.value.response.json()["detail"]


def test_input_longer_than_the_context_is_400_with_counts(client, tokenizer):
    text = "zebra " * 600
    n = len(tokenizer(text))
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="emb", input=["short", text])
    detail = error.value.response.json()["detail"]
    assert f"input 1 has {n} tokens" in detail and "512" in detail


@pytest.mark.parametrize(("body", "message"), [
    ({"input": []}, "input: [] is not valid"),
    ({"input": ""}, "input 0 is an empty string"),
    ({"input": ["a", ""]}, "input 1 is an empty string"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format: 'hex' is not one of"),
    ({"input": "x", "dimensions": 0}, "dimensions: 0 is less than the minimum of 1"),
])
def test_bad_requests_are_400(server, body, message):
    response = post(server, "/v1/embeddings", {"model": "emb", **body})
    assert response.status_code == 400
    assert message in response.json()["detail"]
