"""Start-up warm-up of vector-store search: load what a store's first searches would load.

Measured on a kept 100k-chunk store (docs/benchmarks.md, "Search after a restart"): the first
search of a store after a start paid for loading the embedding model (about 1 s), Chroma's
vector index (0.5-1.2 s, and about 200 MiB) and, for keyword and hybrid search, reading each
query term's postings from the database the first time (3-10 ms per term from the page cache,
up to 50 from disk; the first keyword queries took 40-120 ms against 10-15 warm). The server
now does that work in the background after it starts, before anyone asks:

- the stores most recently used first (`last_active_at`), at most `search_warmup_stores` of
  them (0 turns warm-up off); expired stores are skipped;
- side by side: the stores' embedding models (loaded, not run), each on its model's thread;
  their vector indexes, one after another in one worker thread; and, store by store in another,
  their keyword postings, the terms with the most postings first, up to
  `search_warmup_postings_mb` for all stores together (never more than the postings cache
  holds; see ggstack.stores.keywords), one term at a time, giving way to searches
  (ggstack.stores.activity): read straight through beside a stream of vector searches, it made
  them 5-10 ms slower each.

Readiness does not wait for it: `/v1/health` answers as soon as the server can answer a search
correctly, which it can from the start. A search that arrives while its store warms does the
same loads itself (each load happens once: the model registry shares a model's loading, Chroma
loads an index once, and the postings cache keeps whichever read lands) and gets the same
answer it would later. Progress is logged, and shown at `GET /metrics`
(`ggstack_search_warmup_running`, `ggstack_vector_store_warm`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ggstack.engines.registry import ModelRegistry
from ggstack.ingest.records import VECTOR_STORE, store_expired
from ggstack.stores.base import MetadataStore, VectorStore

log = logging.getLogger("ggstack.search.warmup")

Warmth = Literal["pending", "warm", "failed"]
MIB = 1024 * 1024


@dataclass
class SearchWarmup:
    """Built in the lifespan; `run()` is the background task, `stores` what it chose and how far
    each got (read by /metrics)."""

    metadata: MetadataStore
    vectors: VectorStore
    models: ModelRegistry
    max_stores: int
    postings_bytes: int
    #: From creation (the lifespan starts `run` right after) until `run` ends: a probe that
    #: comes before the task's first step must not read "done".
    running: bool = field(init=False)
    stores: dict[str, Warmth] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.running = self.max_stores > 0

    async def run(self) -> None:
        if self.max_stores <= 0:
            return
        try:
            started = time.perf_counter()
            chosen = await self._recent_stores()
            self.stores = dict.fromkeys((doc["id"] for doc in chosen), "pending")
            # Side by side: the embedding models on their own threads, the stores' vector indexes
            # one after another (the most recent first), and the keyword postings. Loaded one
            # after the other, the model and the index made the first vector search after a start
            # wait for both (0.7-1.2 s), and postings read after them raced the searches that
            # followed; read now, they are mostly in while the first search waits anyway.
            loading, reading = await asyncio.gather(self._load(chosen), self._read_postings(chosen))
            self.stores = {store_id: "failed" if store_id in loading | reading else "warm" for store_id in self.stores}
            if chosen:
                log.info("search warm-up: %d of %d vector stores warm in %.1f s", sum(
                    state == "warm" for state in self.stores.values()), len(chosen), time.perf_counter() - started)
        finally:
            self.running = False

    async def _recent_stores(self) -> list[dict[str, Any]]:
        page = await self.metadata.list(VECTOR_STORE, limit=None, order="desc")
        live = [doc for doc in page.items if not store_expired(doc)]
        live.sort(key=lambda doc: int(doc.get("last_active_at") or doc.get("created_at") or 0), reverse=True)
        return live[:self.max_stores]

    async def _load(self, chosen: list[dict[str, Any]]) -> set[str]:
        """Load the chosen stores' embedding models and vector indexes; the ids of the stores
        whose model or index failed (logged: their first search loads them)."""
        failed: set[str] = set()

        async def model(name: str) -> None:
            started = time.perf_counter()
            try:
                # Loaded, not run: an embedding of its own would share a batch with the first
                # queries' and move their vectors in the last bits (batched float sums), so a
                # search during warm-up would not score exactly as later. Its first embedding
                # costs 20-45 ms once, against 4-10 later.
                await self.models.embedder(name)
            except Exception:  # warm-up is an optimisation: the first search still works
                log.warning("search warm-up: embedding model %s not loaded", name, exc_info=True)
                failed.update(doc["id"] for doc in chosen if doc.get("embedding_model") == name)
                return
            log.info("search warm-up: embedding model %s loaded in %.2f s", name, time.perf_counter() - started)

        async def indexes() -> None:
            for doc in chosen:
                started = time.perf_counter()
                try:
                    await self.vectors.warm_index(doc["id"])
                except Exception:
                    log.warning("search warm-up: vector store %s: vector index not loaded", doc["id"], exc_info=True)
                    failed.add(doc["id"])
                    continue
                log.info("search warm-up: vector store %s: vector index loaded in %.2f s", doc["id"],
                         time.perf_counter() - started)

        names = dict.fromkeys(doc["embedding_model"] for doc in chosen if doc.get("embedding_model"))
        await asyncio.gather(indexes(), *(model(name) for name in names))
        return failed

    async def _read_postings(self, chosen: list[dict[str, Any]]) -> set[str]:
        """Read the chosen stores' keyword postings, store by store within the budget; the ids of
        the stores where that failed (logged: their first keyword search reads them)."""
        budget, failed = self.postings_bytes, set()
        for doc in chosen:
            store_id, started = doc["id"], time.perf_counter()
            try:
                cached = await self.vectors.warm_keywords(store_id, postings_bytes=max(0, budget))
            except Exception:  # warm-up is an optimisation: the first search still works
                failed.add(store_id)
                log.warning("search warm-up: vector store %s: keyword postings not read", store_id, exc_info=True)
                continue
            budget -= cached
            log.info("search warm-up: vector store %s: %.1f MiB of keyword postings read in %.2f s",
                     store_id, cached / MIB, time.perf_counter() - started)
        return failed
