"""/v1/health tells the truth: 200 while the database, Chroma and loaded models answer, 503
naming what is down once the Chroma server is stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

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
    config = {"chroma_url": url,
              "models": [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"}]}
    server = Server(tmp_path / "data", config=config).start()
    try:
        assert httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": "x"}).status_code == 200
        assert httpx.get(f"{server.url}/v1/health").json() == {"status": "OK"}
        chroma.terminate()
        chroma.wait(timeout=30)
        answer = httpx.get(f"{server.url}/v1/health", timeout=30)
        assert answer.status_code == 503
        assert answer.json()["detail"] == "degraded: chroma does not answer"
    finally:
        server.stop()
        assert not server.mismatches(), "\n".join(server.mismatches())
        if chroma.poll() is None:
            chroma.kill()
            chroma.wait()
