"""Ingestion survives kill -9: a batch interrupted mid-way finishes after a restart, with
every file completed exactly once, chunk for chunk what an uninterrupted run stores."""

from __future__ import annotations

import pytest

from tests.e2e.test_vector_stores import (
    MODES,
    chroma_url_for,
    chunk_texts,
    connect,
    prose,
    settled_batch,
    tiny_config,
    upload,
    wait_until,
)
from tests.server import Server

FILES = 10


@pytest.mark.parametrize("mode", MODES)
def test_kill_during_a_batch_then_restart_finishes_every_file(mode, request, tmp_path, tiny_embed_gguf):
    config = tiny_config(tiny_embed_gguf, chroma_url_for(request, mode))
    server = Server(tmp_path, config=config).start()
    try:
        client = connect(server)
        ids = [upload(client, f"r{i}.txt", prose(f"recovery file {i}", 100)) for i in range(FILES)]
        store = client.vector_stores.create(name="crash")
        batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=ids)

        def some_done():
            counts = client.vector_stores.file_batches.retrieve(batch_id=batch.id,
                                                                vector_store_id=store.id).file_counts
            return counts if counts.completed >= 1 else None

        at_kill = wait_until(some_done, interval=0.01)
    finally:
        server.kill()
    assert at_kill.in_progress > 0, f"the batch finished before the kill; make it bigger ({at_kill})"

    server = Server(tmp_path, config=config, port=server.port).start()
    try:
        done = settled_batch(client, store.id, batch.id)
        assert done.status == "completed"
        assert (done.file_counts.completed, done.file_counts.failed, done.file_counts.total) == (FILES, 0, FILES)
        after = client.vector_stores.retrieve(store.id)
        assert after.status == "completed" and after.file_counts.in_progress == 0

        # The same files indexed without interruption give exactly the same chunks.
        clean = client.vector_stores.create(name="clean")
        reference = client.vector_stores.file_batches.create(vector_store_id=clean.id, file_ids=ids)
        settled_batch(client, clean.id, reference.id)
        for file_id in ids:
            recovered = chunk_texts(server, store.id, file_id)
            assert recovered and recovered == chunk_texts(server, clean.id, file_id)
        assert after.usage_bytes == client.vector_stores.retrieve(clean.id).usage_bytes
    finally:
        server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())
