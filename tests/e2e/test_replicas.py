"""Two replicas on one real PostgreSQL and one real `chroma run` server share all state.

Replica A reaches its embedding model only through a remote that accepts connections and
never answers, so every file A claims hangs there, mid-ingestion, until A is killed -9.
Replica B embeds locally. A file batch uploaded through A is read through B; B indexes
the files nobody holds at once, and A's after its leases (2 s here) run out. Every file is
indexed once, chunk for chunk what an uninterrupted run stores. A model registered through
one replica is served by the other, and an unregistration is seen by both.

Eval and fine-tuning jobs are leased the same way. A, started again, runs an eval job whose
candidate is a model on the stalled remote (so it stays in progress) and a long fine-tuning job
on the tiny model; B stopping and starting leaves both alone (A holds them), and once A is
killed -9, B fails both, with the reason, after their leases run out.
"""

from __future__ import annotations

import socket
import uuid

import httpx
import psycopg
import pytest
from llama_stack_client import LlamaStackClient

from tests.e2e.test_post_training import ROWS, long_run, wait_for
from tests.e2e.test_vector_stores import chunk_texts, connect, prose, settled_batch, upload, wait_until
from tests.server import Server

FILES = 8
LEASE_SECONDS = 2
MC_FN = "basic::regex_parser_multiple_choice_answer"
STALLED_CANDIDATE = {"type": "model", "model": "stalled-chat", "sampling_params": {"max_tokens": 2}}


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
    (root / "checkpoints").mkdir()
    shared = {"database_url": database["url"], "chroma_url": chroma_server_url, "files_dir": str(root / "files"),
              "lease_seconds": LEASE_SECONDS, "model_refresh_seconds": 0.5,
              "model_dirs": [str(root / "checkpoints"), str(tiny_chat_gguf.parent), str(tiny_embed_gguf.parent)]}
    stuck = {**shared, "inference_providers": [
        {"provider_id": "unreachable-gpu", "base_url": stalled_url, "timeout_seconds": 600, "retries": 0,
         "models": [{"identifier": "embed", "model_type": "embedding", "embedding_dimension": 32},
                    {"identifier": "stalled-chat", "model_type": "llm"}]}],
        "models": [{"identifier": "trainee", "path": str(tiny_chat_gguf), "model_type": "llm"}]}
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


def test_jobs_survive_a_restart_beside_them_and_fail_once_their_replica_is_killed(replicas):
    a, b = replicas
    a.start()  # killed -9 by the test above: back, as a new process
    via_a = LlamaStackClient(base_url=a.url, max_retries=0, timeout=60)
    via_b = LlamaStackClient(base_url=b.url, max_retries=0, timeout=60)
    via_b.datasets.register(purpose="eval/messages-answer", dataset_id="stalled", source={"type": "rows", "rows": [
        {"chat_completion_input": '[{"role": "user", "content": "hi"}]', "expected_answer": "A"}]})
    via_b.benchmarks.register(benchmark_id="stalled", dataset_id="stalled", scoring_functions=[MC_FN])
    via_b.datasets.register(purpose="post-training/messages", source={"type": "rows", "rows": ROWS},
                            dataset_id="capitals")
    job = via_a.eval.run_eval("stalled", benchmark_config={"eval_candidate": STALLED_CANDIDATE, "scoring_params": {}})
    via_a.post_training.supervised_fine_tune(
        job_uuid="sft-replica", model="trainee", training_config=long_run(), hyperparam_search_config={},
        logger_config={}, checkpoint_dir=str(a.data_dir.parent / "checkpoints" / "sft-replica"))
    wait_until(lambda: via_b.eval.jobs.status(job.job_id, benchmark_id="stalled").status == "in_progress")
    wait_for(via_b, "sft-replica", lambda s: len(s.resources_allocated["step_losses"]) >= 1)

    b.stop()
    b.start()  # B's stop and start leave the jobs A runs alone
    assert via_b.eval.jobs.status(job.job_id, benchmark_id="stalled").status == "in_progress"
    assert via_b.post_training.job.status(job_uuid="sft-replica").status == "in_progress"

    a.kill()
    wait_until(lambda: via_b.eval.jobs.status(job.job_id, benchmark_id="stalled").status == "failed")
    result = httpx.get(f"{b.url}/v1alpha/eval/benchmarks/stalled/jobs/{job.job_id}/result")
    assert result.status_code == 400 and "lease expired" in result.json()["detail"], result.text
    training = wait_for(via_b, "sft-replica", lambda s: s.status != "in_progress")
    assert training.status == "failed" and "lease expired" in training.resources_allocated["error"]
