"""Search warm-up at start (ggstack.search.warmup): the most recently used stores' indexes are loaded
in the background, `GET /metrics` says which, and no search answers differently for it: not
before the restart, not while the warm-up runs, not after it, not with it turned off."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from ggstack.core.ids import now
from ggstack.engines.registry import ModelRegistry
from ggstack.ingest.records import VECTOR_STORE
from ggstack.search.warmup import SearchWarmup
from ggstack.stores.base import Chunk
from ggstack.stores.chroma import ChromaVectorStore
from ggstack.stores.keywords import KeywordIndex
from ggstack.stores.sql import SqlMetadataStore
from tests.e2e.test_vector_stores import connect, prose, search, tiny_config, upload, wait_until
from tests.server import Server

MODES = ("vector", "keyword", "hybrid")
QUERIES = ("herons in shallow water", "salt marsh birds")


def metric(server: Server, name: str) -> dict[str, float]:
    """`name`'s samples at /metrics by their label text (e.g. 'vector_store="vs_1"'; '' without labels)."""
    text = httpx.get(f"{server.url}/metrics").text
    return {labels or "": float(value)
            for labels, value in re.findall(rf"^{name}(?:{{(.*)}})? (\S+)$", text, flags=re.MULTILINE)}


def answers(client, store_ids: list[str]) -> list[list[dict]]:
    return [[hit.model_dump() for hit in search(client, store_id, query, search_mode=mode)]
            for store_id in store_ids for query in QUERIES for mode in MODES]


def test_a_restart_warms_the_stores_and_changes_no_answer(tmp_path, tiny_embed_gguf):
    config = tiny_config(tiny_embed_gguf)
    server = Server(tmp_path, config=config).start()
    try:
        client = connect(server)
        store_ids = []
        for topic, other in (QUERIES, QUERIES[::-1]):
            file_id = upload(client, f"{topic}.txt", f"{prose(topic, 30)} {prose(other, 10)}")
            store_ids.append(client.vector_stores.create(name=topic, file_ids=[file_id]).id)
        before = answers(client, store_ids)
        assert all(before), "every search finds something, or the comparison proves little"
    finally:
        server.stop()

    server = Server(tmp_path, config=config, port=server.port).start()
    try:
        # Right after readiness, while the warm-up may still run: the same answers.
        assert answers(client, store_ids) == before
        warm = {f'vector_store="{store_id}"': 1.0 for store_id in store_ids}
        wait_until(lambda: metric(server, "ggstack_vector_store_warm") == warm)
        assert metric(server, "ggstack_search_warmup_running") == {"": 0.0}
        assert answers(client, store_ids) == before
    finally:
        server.stop()

    server = Server(tmp_path, config={**config, "search_warmup_stores": 0}, port=server.port).start()
    try:
        assert metric(server, "ggstack_vector_store_warm") == {}
        assert metric(server, "ggstack_model_loaded") == {}  # nothing loads the model before a search
        assert answers(client, store_ids) == before
    finally:
        server.stop()
    assert not server.mismatches(), "\n".join(server.mismatches())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Parts:
    """What a server's warm-up works with, on one SQLite file and an embedded Chroma."""

    metadata: SqlMetadataStore
    keywords: KeywordIndex
    vectors: ChromaVectorStore
    registry: ModelRegistry


@pytest.fixture
async def parts(tmp_path) -> AsyncIterator[Parts]:
    keywords = KeywordIndex.open(f"sqlite:///{tmp_path / 'ggstack.db'}")
    made = Parts(SqlMetadataStore.open(f"sqlite:///{tmp_path / 'ggstack.db'}"), keywords,
                 ChromaVectorStore.embedded(tmp_path / "chroma", keywords), ModelRegistry())
    try:
        yield made
    finally:
        await made.registry.close()
        made.vectors.close()
        keywords.close()
        made.metadata.close()


@pytest.mark.anyio
async def test_the_most_recently_used_stores_are_warmed_first_and_at_most_so_many(parts):
    metadata, vectors, registry = parts.metadata, parts.vectors, parts.registry
    stamp = now()
    # (id, seconds since last use, expiry in days); "gone" has a record but no index.
    for store_id, idle, days in (("old", 5000, None), ("recent", 10, None), ("gone", 100, None),
                                 ("middle", 1000, None), ("expired", 3 * 86400, 1)):
        doc = {"id": store_id, "created_at": stamp - idle, "last_active_at": stamp - idle}
        if days:
            doc["expires_after"] = {"anchor": "last_active_at", "days": days}
        await metadata.put(VECTOR_STORE, store_id, doc)
        if store_id != "gone":
            await vectors.create(store_id, dimension=2)
            await vectors.upsert_chunks(store_id, [Chunk("f", 0, f"{store_id} words", embedding=[1.0, 0.0])])
    warmup = SearchWarmup(metadata, vectors, registry, max_stores=3, postings_bytes=1 << 20)
    await warmup.run()
    assert list(warmup.stores.items()) == [("recent", "warm"), ("gone", "failed"), ("middle", "warm")]
    assert not warmup.running

    off = SearchWarmup(metadata, vectors, registry, max_stores=0, postings_bytes=1 << 20)
    await off.run()
    assert off.stores == {}


@pytest.mark.anyio
async def test_a_store_whose_model_does_not_load_is_failed_and_the_others_warm(parts):
    """Models, vector indexes and keyword postings load side by side; a model that fails marks
    its stores failed (their first search tries again), the others are warm, postings read."""
    stamp = now()
    for store_id, model, idle in (("unloadable", "no-such-model", 10), ("plain", None, 20)):
        await parts.metadata.put(VECTOR_STORE, store_id, {"id": store_id, "created_at": stamp - idle,
                                                          "last_active_at": stamp - idle, "embedding_model": model})
        await parts.vectors.create(store_id, dimension=2)
        await parts.vectors.upsert_chunks(store_id, [Chunk("f", 0, f"{store_id} words", embedding=[1.0, 0.0])])
    warmup = SearchWarmup(parts.metadata, parts.vectors, parts.registry, max_stores=4, postings_bytes=1 << 20)
    await warmup.run()
    assert warmup.stores == {"unloadable": "failed", "plain": "warm"}
    keywords = parts.keywords
    with keywords._engine.connect() as conn:
        version = keywords._stats(conn, "plain")[0]
    assert keywords._cache.get("plain", version, "plain") is not None
