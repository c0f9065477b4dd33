"""Models on a real server: the native registry API, the OpenAI and Dell lists, and persistence."""

from __future__ import annotations

import json
import shutil

import httpx
import openai
import pytest

from tests.server import Server, http_client

EMB = {"identifier": "emb", "model_type": "embedding"}
CHAT = {"identifier": "chat", "model_type": "llm"}


def run_config(tiny_embed_gguf, tiny_chat_gguf, *model_dirs) -> dict:
    """Run-config models come from anywhere; POST /v1/models only from `model_dirs`."""
    return {"models": [{**EMB, "path": str(tiny_embed_gguf)}, {**CHAT, "path": str(tiny_chat_gguf)}],
            "model_dirs": [str(d) for d in model_dirs]}


def stopped(server: Server) -> None:
    server.stop()
    assert server.mismatches() == [], "\n".join(server.mismatches())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model-dir")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embed_gguf, tiny_chat_gguf, model_dir):
    config = run_config(tiny_embed_gguf, tiny_chat_gguf, model_dir)
    server = Server(tmp_path_factory.mktemp("models"), config=config).start()
    yield server
    stopped(server)


@pytest.fixture
def http(server):
    yield from http_client(server, timeout=30)


@pytest.fixture
def model_file(tmp_path, model_dir, tiny_embed_gguf):
    """A GGUF of the test's own in the model directory, so a test may delete it."""
    path = model_dir / tmp_path.name / "copy-of-tiny-bert.gguf"
    path.parent.mkdir()
    shutil.copy(tiny_embed_gguf, path)
    return path


def relative(path, model_dir) -> str:
    return path.relative_to(model_dir).as_posix()


def embed(http: httpx.Client, model: str, text: str = "hello world") -> httpx.Response:
    return http.post("/v1/embeddings", json={"model": model, "input": text, "encoding_format": "float"})


def test_native_list_describes_each_model(http, tiny_embed_gguf, tiny_chat_gguf):
    """A run-config model outside the model directories shows only its file name."""
    models = {m["identifier"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["emb"] == {"identifier": "emb", "provider_resource_id": tiny_embed_gguf.name,
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


def test_register_use_get_unregister(http, model_file, model_dir):
    """By a path relative to the model directory; provider_resource_id gives back the same. The
    lists (kept rendered between changes) show the model from its registration to its removal."""
    native, openai = "/v1/models", "/v1/openai/v1/models"
    assert "mine" not in [m["identifier"] for m in http.get(native).json()["data"]]
    assert "mine" not in [m["id"] for m in http.get(openai).json()["data"]]
    registered = http.post("/v1/models", json={
        "model_id": "mine", "provider_model_id": relative(model_file, model_dir), "model_type": "embedding",
        "metadata": {"embedding_dimension": 32, "context_length": 256, "note": "kept"}})
    assert registered.status_code == 200, registered.text
    assert registered.json() == {"identifier": "mine", "provider_resource_id": relative(model_file, model_dir),
                                 "provider_id": "llama-cpp", "type": "model", "model_type": "embedding",
                                 "metadata": {"note": "kept", "embedding_dimension": 32,
                                              "context_length": 256}}
    assert http.get("/v1/models/mine").json() == registered.json()
    assert "mine" in [m["identifier"] for m in http.get(native).json()["data"]]
    assert "mine" in [m["id"] for m in http.get(openai).json()["data"]]
    vector = embed(http, "mine").json()["data"][0]["embedding"]
    assert vector == embed(http, "emb").json()["data"][0]["embedding"]

    assert http.delete("/v1/models/mine").status_code == 200
    assert http.get("/v1/models/mine").status_code == 404
    assert embed(http, "mine").status_code == 404
    assert "mine" not in [m["id"] for m in http.get("/v1/openai/models").json()["data"]]
    assert "mine" not in [m["identifier"] for m in http.get(native).json()["data"]]
    assert "mine" not in [m["id"] for m in http.get(openai).json()["data"]]
    assert http.delete("/v1/models/mine").status_code == 404
    assert model_file.is_file()  # unregistering never deletes the file


def test_registering_a_taken_id_is_409(http, model_file):
    response = http.post("/v1/models", json={"model_id": "emb", "provider_model_id": str(model_file),
                                             "model_type": "embedding"})
    assert response.status_code == 409
    assert "already exists" in response.json()["detail"]


@pytest.mark.parametrize(("body", "message"), [
    ({"provider_model_id": "/no/such/model.gguf"}, "'/no/such/model.gguf' is not in the server's model dir"),
    ({"provider_id": "ollama"}, "provider_id 'ollama' is not one of llama-cpp, ctransformers"),
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


def test_a_file_that_is_not_a_gguf_is_400(http, model_dir):
    path = model_dir / "notes.gguf"
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
    config = run_config(tiny_embed_gguf, tiny_chat_gguf, model_file.parent, tmp_path)
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
            assert http.get("/v1/models/kept").json()["provider_resource_id"] == model_file.name
            assert embed(http, "kept").json()["data"][0]["embedding"] == before
    finally:
        stopped(second)


@pytest.mark.parametrize("name", ["../outside.gguf", "sub/../../outside.gguf", "link.gguf", "OUTSIDE",
                                  "nul\x00.gguf", "surrogate\udbc6.gguf"])
def test_paths_out_of_the_model_directory_are_refused_alike(http, model_dir, tiny_embed_gguf, name):
    """`..`, a symlink pointing out, an absolute path outside, and names no file system can hold
    (a NUL byte, a lone surrogate: found by the stateful fuzz as a 500) all get the answer a
    missing file gets, which names only what the client sent."""
    outside = model_dir.parent / "outside.gguf"
    shutil.copy(tiny_embed_gguf, outside)
    link = model_dir / "link.gguf"
    if not link.exists():
        link.symlink_to(outside)
    name = str(outside) if name == "OUTSIDE" else name
    body = json.dumps({"model_id": "escape", "provider_model_id": name, "model_type": "embedding"})  # \u-escaped
    response = http.post("/v1/models", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail == (f"Invalid value: model file '{name}' is not in the server's model directories "
                      "(model_dirs in the run config) (param: provider_model_id)")
    assert http.get("/v1/models/escape").status_code == 404


@pytest.mark.parametrize(("options", "message"), [
    ({"n_threads": 10_000}, "options.n_threads 10000 is more than this machine's"),
    ({"n_threads": "4"}, "options.n_threads must be a positive integer"),
    ({"n_ctx": 1_000_000}, "options.n_ctx 1000000 is more than this model allows (512"),
    ({"use_mmap": "yes"}, "options.use_mmap must be true or false"),
    ({"rope_scale": 2}, "unknown llama-cpp option(s): rope_scale"),
])
def test_engine_options_out_of_bounds_are_400(http, model_file, model_dir, options, message):
    response = http.post("/v1/models", json={"model_id": "opts", "provider_model_id": relative(model_file, model_dir),
                                             "model_type": "embedding", "metadata": {"options": options}})
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


def test_context_length_past_trained_context_is_400(http, model_file, model_dir):
    response = http.post("/v1/models", json={"model_id": "long", "provider_model_id": relative(model_file, model_dir),
                                             "model_type": "embedding", "metadata": {"context_length": 4096}})
    assert response.status_code == 400
    assert "context_length 4096 is more than this model allows (512" in response.json()["detail"]
