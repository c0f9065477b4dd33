"""Models on a real server: the native registry API, the OpenAI and Dell lists, and persistence."""

from __future__ import annotations

import shutil

import httpx
import openai
import pytest

from tests.server import Server

EMB = {"identifier": "emb", "model_type": "embedding"}
CHAT = {"identifier": "chat", "model_type": "llm"}


def run_config(tiny_embed_gguf, tiny_chat_gguf) -> dict:
    return {"models": [{**EMB, "path": str(tiny_embed_gguf)}, {**CHAT, "path": str(tiny_chat_gguf)}]}


def stopped(server: Server) -> None:
    server.stop()
    assert server.mismatches() == [], "\n".join(server.mismatches())


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embed_gguf, tiny_chat_gguf):
    config = run_config(tiny_embed_gguf, tiny_chat_gguf)
    server = Server(tmp_path_factory.mktemp("models"), config=config).start()
    yield server
    stopped(server)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def model_file(tmp_path, tiny_embed_gguf):
    """A GGUF of the test's own, so a test may delete it."""
    path = tmp_path / "copy-of-tiny-bert.gguf"
    shutil.copy(tiny_embed_gguf, path)
    return path


def embed(http: httpx.Client, model: str, text: str = "hello world") -> httpx.Response:
    return http.post("/v1/embeddings", json={"model": model, "input": text, "encoding_format": "float"})


def test_native_list_describes_each_model(http, tiny_embed_gguf, tiny_chat_gguf):
    models = {m["identifier"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["emb"] == {"identifier": "emb", "provider_resource_id": str(tiny_embed_gguf),
                             "provider_id": "llama-cpp", "type": "model", "model_type": "embedding",
                             "metadata": {"embedding_dimension": 32, "context_length": 512}}
    assert models["chat"]["model_type"] == "llm"
    assert models["chat"]["metadata"]["context_length"] == 512
    assert "embedding_dimension" not in models["chat"]["metadata"]
    assert http.get("/v1/models/emb").json() == models["emb"]


def test_openai_list(server):
    client = openai.OpenAI(base_url=server.url + "/v1/openai/v1", api_key="x", max_retries=0)
    listed = {m.id: m for m in client.models.list()}
    assert {"emb", "chat"} <= set(listed)
    assert listed["emb"].object == "model" and listed["emb"].created > 0 and listed["emb"].owned_by


def test_dell_list_and_retrieve(http):
    listed = http.get("/v1/openai/models").json()
    assert listed["object"] == "list"
    by_id = {m["id"]: m for m in listed["data"]}
    assert by_id["emb"]["capability"] == "embedding" and by_id["chat"]["capability"] == "llm"
    assert http.get("/v1/openai/models/emb").json() == by_id["emb"]
    missing = http.get("/v1/openai/models/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Model 'nope' not found"


def test_unknown_model_is_404(http):
    for response in (http.get("/v1/models/nope"), http.delete("/v1/models/nope")):
        assert response.status_code == 404
        assert "not found" in response.json()["detail"]


def test_register_use_get_unregister(http, model_file):
    registered = http.post("/v1/models", json={
        "model_id": "mine", "provider_model_id": str(model_file), "model_type": "embedding",
        "metadata": {"embedding_dimension": 32, "context_length": 256, "note": "kept"}})
    assert registered.status_code == 200, registered.text
    assert registered.json() == {"identifier": "mine", "provider_resource_id": str(model_file),
                                 "provider_id": "llama-cpp", "type": "model", "model_type": "embedding",
                                 "metadata": {"note": "kept", "embedding_dimension": 32,
                                              "context_length": 256}}
    assert http.get("/v1/models/mine").json() == registered.json()
    assert "mine" in [m["identifier"] for m in http.get("/v1/models").json()["data"]]
    vector = embed(http, "mine").json()["data"][0]["embedding"]
    assert vector == embed(http, "emb").json()["data"][0]["embedding"]

    assert http.delete("/v1/models/mine").status_code == 200
    assert http.get("/v1/models/mine").status_code == 404
    assert embed(http, "mine").status_code == 404
    assert "mine" not in [m["id"] for m in http.get("/v1/openai/models").json()["data"]]
    assert http.delete("/v1/models/mine").status_code == 404
    assert model_file.is_file()  # unregistering never deletes the file


def test_registering_a_taken_id_is_409(http, model_file):
    response = http.post("/v1/models", json={"model_id": "emb", "provider_model_id": str(model_file),
                                             "model_type": "embedding"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize(("body", "message"), [
    ({"provider_model_id": "/no/such/model.gguf"}, "/no/such/model.gguf does not exist"),
    ({"provider_id": "ollama"}, "provider_id: 'ollama' is not one of"),
    ({"metadata": {"embedding_dimension": 64}}, "embedding_dimension 64 does not match the model's 32"),
    ({"metadata": {"context_length": "long"}}, "context_length"),
    ({"metadata": {"engine": "ctransformers"}, "provider_id": "llama-cpp"}, "contradicts provider_id"),
    ({"provider_id": "ctransformers"}, "the ctransformers provider only runs LLMs"),
])
def test_bad_registrations_are_400(http, model_file, body, message):
    request = {"model_id": "bad", "provider_model_id": str(model_file), "model_type": "embedding", **body}
    response = http.post("/v1/models", json=request)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert http.get("/v1/models/bad").status_code == 404


def test_a_file_that_is_not_a_gguf_is_400(http, tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("not a model")
    response = http.post("/v1/models", json={"model_id": "bad", "provider_model_id": str(path)})
    assert response.status_code == 400
    assert "notes.gguf is not a usable GGUF" in response.json()["detail"]


def test_an_embedding_file_registered_as_llm_is_refused_for_embeddings(http, model_file):
    response = http.post("/v1/models", json={"model_id": "as-llm", "provider_model_id": str(model_file)})
    assert response.status_code == 200
    try:
        assert http.get("/v1/models/as-llm").json()["model_type"] == "llm"  # the default type
        response = embed(http, "as-llm")
        assert response.status_code == 400 and "not an embedding model" in response.json()["detail"]
    finally:
        http.delete("/v1/models/as-llm")


def test_registrations_survive_a_restart_and_config_models_come_back(tmp_path, tiny_embed_gguf,
                                                                     tiny_chat_gguf, model_file):
    config = run_config(tiny_embed_gguf, tiny_chat_gguf)
    gone = tmp_path / "gone.gguf"
    shutil.copy(tiny_embed_gguf, gone)
    first = Server(tmp_path / "data", config=config).start()
    try:
        with httpx.Client(base_url=first.url, timeout=30) as http:
            for model_id, path in (("kept", model_file), ("dropped", model_file), ("file-gone", gone)):
                response = http.post("/v1/models", json={"model_id": model_id, "provider_model_id": str(path),
                                                         "model_type": "embedding"})
                assert response.status_code == 200, response.text
            before = embed(http, "kept").json()["data"][0]["embedding"]
            assert http.delete("/v1/models/dropped").status_code == 200
            # a run-config model can be unregistered, for this run only
            assert http.delete("/v1/models/chat").status_code == 200
            assert http.get("/v1/models/chat").status_code == 404
    finally:
        stopped(first)
    gone.unlink()

    second = Server(tmp_path / "data", config=config).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            ids = {m["identifier"] for m in http.get("/v1/models").json()["data"]}
            assert ids == {"emb", "chat", "kept"}  # file-gone is skipped, not fatal
            assert http.get("/v1/models/kept").json()["provider_resource_id"] == str(model_file)
            assert embed(http, "kept").json()["data"][0]["embedding"] == before
    finally:
        stopped(second)
