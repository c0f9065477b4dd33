# ==== Chroma server for e2e tests (owner: stores; others append their own sections) ====
# `chroma_server_url`: a real `chroma run` process (the CLI ships with the chromadb package),
# one per test session, on a free port with its data in a tmp dir. Started on first use only.

import socket as _chroma_socket
import subprocess as _chroma_subprocess
import sys as _chroma_sys
import time as _chroma_time
import urllib.request as _chroma_urllib
from pathlib import Path as _ChromaPath

import pytest as _chroma_pytest

CHROMA_START_TIMEOUT_S = 60


def _chroma_free_port() -> int:
    with _chroma_socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _chroma_heartbeat(url: str) -> bool:
    try:
        with _chroma_urllib.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@_chroma_pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory):
    """Base URL (http://127.0.0.1:<port>) of a running Chroma server, stopped after the session."""
    root = tmp_path_factory.mktemp("chroma-server")
    chroma = _ChromaPath(_chroma_sys.executable).parent / "chroma"
    port = _chroma_free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "chroma.log"
    with open(log_path, "wb") as log:
        process = _chroma_subprocess.Popen(
            [str(chroma), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=_chroma_subprocess.STDOUT, cwd=root)
    try:
        deadline = _chroma_time.monotonic() + CHROMA_START_TIMEOUT_S
        while not _chroma_heartbeat(url):
            if process.poll() is not None or _chroma_time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                _chroma_pytest.fail(f"chroma run did not start (exit {process.poll()}):\n{tail}")
            _chroma_time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except _chroma_subprocess.TimeoutExpired:
            process.kill()
            process.wait()
# ==== end Chroma server section ====


# ==== Tiny models for engine tests (owner: engines; others append their own sections) ====
# `tiny_chat_gguf`: a 2-layer random llama with a chatml template and byte-level vocab.
# `tiny_embed_gguf`: a 2-layer random BERT encoder with mean pooling (32 dims).
# Both are built once per session in a tmp dir (well under a second each); see
# tests/fixtures/gguf_builder.py for what their output looks like.

import pytest as _engines_pytest


@_engines_pytest.fixture(scope="session")
def tiny_chat_gguf(tmp_path_factory):
    """Path to a tiny llama-architecture chat GGUF (context 512, chatml template, EOS <|im_end|>)."""
    from tests.fixtures.gguf_builder import build_tiny_chat_gguf

    return build_tiny_chat_gguf(tmp_path_factory.mktemp("tiny-models") / "tiny-chat.gguf")


@_engines_pytest.fixture(scope="session")
def tiny_embed_gguf(tmp_path_factory):
    """Path to a tiny BERT embedding GGUF (32 dims, context 512, mean pooling)."""
    from tests.fixtures.gguf_builder import build_tiny_bert_gguf

    return build_tiny_bert_gguf(tmp_path_factory.mktemp("tiny-models") / "tiny-bert.gguf")
# ==== end tiny models section ====
