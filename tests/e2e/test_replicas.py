"""Two replicas on one real PostgreSQL and one real `chroma run` server share all state.

Replica A reaches its embedding model only through a remote that accepts connections and
never answers, so every file A claims hangs there, mid-ingestion, until A is killed -9.
Replica B embeds locally. A file batch uploaded through A is read through B; B indexes
the files nobody holds at once, and A's after its leases (2 s here) run out. Every file is
indexed once, chunk for chunk what an uninterrupted run stores. A model registered through
one replica is served by the other, and an unregistration is seen by both.
"""

from __future__ import annotations

import socket
import uuid

import httpx
import psycopg
import pytest

from tests.e2e.test_vector_stores import chunk_texts, connect, prose, settled_batch, upload, wait_until
from tests.server import Server

FILES = 8
LEASE_SECONDS = 2


@pytest.fixture(scope="module")
def database(postgres_server):
    host, port = postgres_server
    name = f"replicas_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return {"url": f"postgresql+psycopg://postgres@{host}:{port}/{name}", "host": host, "port": port,
            "dbname": name}


@pytest.fixture(scope="module")
def stalled_url():
    """A socket that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, database, chroma_server_url, stalled_url, tiny_embed_gguf, tiny_chat_gguf):
    root = tmp_path_factory.mktemp("replicas")
    shared = {"database_url": database["url"], "chroma_url": chroma_server_url, "files_dir": str(root / "files"),
              "ingest_lease_seconds": LEASE_SECONDS, "model_refresh_seconds": 0.5,
              "model_dirs": [str(tiny_chat_gguf.parent), str(tiny_embed_gguf.parent)]}
    stuck = {**shared, "inference_providers": [
        {"provider_id": "unreachable-gpu", "base_url": stalled_url, "timeout_seconds": 600, "retries": 0,
         "models": [{"identifier": "embed", "model_type": "embedding", "embedding_dimension": 32}]}]}
    local = {**shared, "models": [{"identifier": "embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]}
    a = Server(root / "a", config=stuck).start()
    b = Server(root / "b", config=local).start()
    yield a, b
    a.kill()
    b.stop()
    assert not b.mismatches(), "\n".join(b.mismatches())


def claimed_by_a(database, store_id: str) -> int:
    """In-progress files of the store whose lease a replica holds (read in the database itself)."""
    with psycopg.connect(host=database["host"], port=database["port"], user="postgres",
                         dbname=database["dbname"]) as conn:
        rows = conn.execute("SELECT data FROM ggstack_documents WHERE kind = 'vector_store_file' AND parent = %s",
                            (store_id,)).fetchall()
    return sum(1 for (data,) in rows if data["status"] == "in_progress" and data.get("run"))


def test_model_registered_on_one_replica_is_served_by_the_other(replicas, tiny_chat_gguf):
    a, b = replicas
    body = {"model_id": "shared-tiny", "provider_model_id": str(tiny_chat_gguf), "model_type": "llm"}
    assert httpx.post(f"{a.url}/v1/models", json=body, timeout=60).status_code == 200
    assert httpx.get(f"{b.url}/v1/models/shared-tiny").json()["identifier"] == "shared-tiny"
    answer = httpx.post(f"{b.url}/v1/chat/completions", timeout=60,
                        json={"model": "shared-tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert answer.status_code == 200 and answer.json()["choices"][0]["finish_reason"] == "length"
    assert httpx.delete(f"{b.url}/v1/models/shared-tiny").status_code == 200
    wait_until(lambda: httpx.get(f"{a.url}/v1/models/shared-tiny").status_code == 404)


def test_a_batch_survives_its_replica_being_killed_mid_ingestion(replicas, database):
    a, b = replicas
    via_a, via_b = connect(a), connect(b)
    ids = [upload(via_a, f"replica-{i}.txt", prose(f"replica file {i}", 60)) for i in range(FILES)]
    store = via_b.vector_stores.create(name="replicated")
    batch = via_a.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)
    # A holds the files it claimed (stuck on its unreachable embedder); B does the rest
    wait_until(lambda: via_b.vector_stores.file_batches.retrieve(
        batch_id=batch.id, vector_store_id=store.id).file_counts.completed == FILES - 2, timeout=120)
    held = via_b.vector_stores.file_batches.retrieve(batch_id=batch.id, vector_store_id=store.id).file_counts
    assert held.in_progress == 2 and claimed_by_a(database, store.id) == 2
    a.kill()

    done = settled_batch(via_b, store.id, batch.id, timeout=120)
    assert done.status == "completed"
    assert (done.file_counts.completed, done.file_counts.failed, done.file_counts.total) == (FILES, 0, FILES)

    clean = via_b.vector_stores.create(name="uninterrupted")
    reference = via_b.vector_stores.file_batches.create(vector_store_id=clean.id, file_ids=ids)
    settled_batch(via_b, clean.id, reference.id, timeout=120)
    for file_id in ids:
        texts = chunk_texts(b, store.id, file_id)
        assert texts and texts == chunk_texts(b, clean.id, file_id)
    assert via_b.vector_stores.retrieve(store.id).usage_bytes == via_b.vector_stores.retrieve(clean.id).usage_bytes
