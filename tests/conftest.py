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
# `tiny_rerank_gguf`: the same BERT as a cross-encoder (rank pooling, a one-output head).
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


@_engines_pytest.fixture(scope="session")
def tiny_rerank_gguf(tmp_path_factory):
    """Path to the tiny BERT as a cross-encoder (rank pooling, one-output classification head)."""
    from tests.fixtures.gguf_builder import build_tiny_reranker_gguf

    return build_tiny_reranker_gguf(tmp_path_factory.mktemp("tiny-models") / "tiny-rerank.gguf")
# ==== end tiny models section ====


# ==== PostgreSQL for store and e2e tests (owner: security; others append their own sections) ====
# `postgres_server`: a real PostgreSQL cluster (Debian's `postgresql` package, which .ci/run
# installs) initialised in a temp dir and started on a free loopback port, one per session.
# PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` user.
# `postgres_url`: a fresh empty database on it per test, as a SQLAlchemy URL.

import os as _pg_os
import shutil as _pg_shutil
import tempfile as _pg_tempfile
import uuid as _pg_uuid

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def _pg_tool(name: str) -> str:
    found = _pg_shutil.which(name) or next((f"{d}/{name}" for d in PG_BIN_DIRS if _pg_os.path.exists(f"{d}/{name}")),
                                          None)
    if found is None:
        _chroma_pytest.fail(f"{name} not found: install Debian's postgresql package (.ci/run does)")
    return found


def _pg_run(args: list[str], as_postgres: bool) -> None:
    command = ["runuser", "-u", "postgres", "--", *args] if as_postgres else args
    _chroma_subprocess.run(command, check=True, stdout=_chroma_subprocess.DEVNULL, stderr=_chroma_subprocess.PIPE)


@_chroma_pytest.fixture(scope="session")
def postgres_server():
    """(host, port) of a running PostgreSQL with trust auth for user `postgres`, on 127.0.0.1 only."""
    as_postgres = _pg_os.geteuid() == 0
    root = _pg_tempfile.mkdtemp(prefix="ggstack-pg-")
    if as_postgres:
        _pg_shutil.chown(root, "postgres")
    data, port = f"{root}/data", _chroma_free_port()
    _pg_run([_pg_tool("initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"], as_postgres)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    _pg_run([_pg_tool("pg_ctl"), "-D", data, "-o", options, "-l", f"{root}/log", "-w", "start"], as_postgres)
    try:
        yield "127.0.0.1", port
    finally:
        _pg_run([_pg_tool("pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"], as_postgres)
        _pg_shutil.rmtree(root, ignore_errors=True)


@_chroma_pytest.fixture
def postgres_url(postgres_server):
    import psycopg

    host, port = postgres_server
    name = f"t_{_pg_uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@{host}:{port}/{name}"
# ==== end PostgreSQL section ====
