"""/v1/health tells the truth: 200 while the database, Chroma and loaded models answer, 503
naming what is down once the Chroma server is stopped; each provider reports its own part
(/v1/providers/{id} health: Chroma's trouble is the vector_io provider's, not inference's)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from llama_stack_client import LlamaStackClient

from ggstack.engines.registry import ModelRegistry, ModelSpec
from ggstack.providers.health import model_problems
from tests.conftest import _chroma_free_port, _chroma_heartbeat
from tests.server import Server


def start_chroma(root: Path) -> tuple[subprocess.Popen, str]:
    port = _chroma_free_port()
    url = f"http://127.0.0.1:{port}"
    chroma = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen([str(chroma), "run", "--path", str(root / "chroma"), "--host", "127.0.0.1",
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not _chroma_heartbeat(url):
        assert process.poll() is None and time.monotonic() < deadline, "chroma run did not start"
        time.sleep(0.2)
    return process, url


def test_health_is_503_when_the_chroma_server_stops(tmp_path, tiny_embed_gguf):
    chroma, url = start_chroma(tmp_path)
    # Every probe checks (no 1 s reuse of the last clean check), so the probe right after the
    # stop sees it; tests/unit/test_health_check.py covers the reuse.
    config = {"chroma_url": url, "health_ttl_s": 0,
              "models": [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"}]}
    server = Server(tmp_path / "data", config=config).start()
    try:
        assert httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": "x"}).status_code == 200
        assert httpx.get(f"{server.url}/v1/health").json() == {"status": "OK"}
        client = LlamaStackClient(base_url=server.url, max_retries=0, timeout=30)
        assert {p.provider_id: p.health for p in client.providers.list()} == {
            p.provider_id: {"status": "OK"} for p in client.providers.list()}
        chroma.terminate()
        chroma.wait(timeout=30)
        answer = httpx.get(f"{server.url}/v1/health", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["detail"] == "degraded: chroma does not answer"
        assert client.providers.retrieve("chromadb").health == {"status": "Error",
                                                                "message": "chroma does not answer"}
        assert client.providers.retrieve("llama-cpp").health == {"status": "OK"}
        listed = {(p["api"], p["provider_id"]): p["health"]["status"]
                  for p in httpx.get(f"{server.url}/v1/providers", timeout=30).json()["data"]}
        assert listed[("vector_io", "chromadb")] == "Error" and listed[("inference", "llama-cpp")] == "OK"
        assert listed[("files", "localfs")] == "OK"
    finally:
        server.stop()
        assert not server.mismatches(), "\n".join(server.mismatches())
        if chroma.poll() is None:
            chroma.kill()
            chroma.wait()


@pytest.mark.anyio
async def test_a_stopped_model_worker_is_its_engines_provider_problem(tiny_chat_gguf):
    registry = ModelRegistry()
    registry.register(ModelSpec(identifier="chat", path=tiny_chat_gguf))
    engine = await registry.chat("chat")
    ctx = SimpleNamespace(models=registry)  # model_problems reads only the registry
    try:
        assert model_problems(ctx, "llama-cpp") == []
        engine.close()  # the worker thread ends while the registry still counts the model loaded
        assert model_problems(ctx, "llama-cpp") == ["model chat's worker has stopped"]
        assert model_problems(ctx, "ctransformers") == []
        assert model_problems(ctx) == ["model chat's worker has stopped"]
    finally:
        await registry.close()
