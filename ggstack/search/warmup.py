"""Start-up warm-up of vector-store search: load what a store's first searches would load.

Measured on a kept 100k-chunk store (docs/benchmarks.md, "Search after a restart"): the first
search of a store after a start paid for loading the embedding model (about 1 s), Chroma's
vector index (0.5-1.2 s, and about 200 MiB) and, for keyword and hybrid search, reading each
query term's postings from the database the first time (3-10 ms per term from the page cache,
up to 50 from disk; the first keyword queries took 40-120 ms against 10-15 warm). The server
now does that work in the background after it starts, before anyone asks:

- the stores most recently used first (`last_active_at`), at most `search_warmup_stores` of
  them (0 turns warm-up off); expired stores are skipped;
- per store: its embedding model (loaded, not run), its vector index, and its keyword
  postings, the terms with the most postings first, up to `search_warmup_postings_mb` for all
  stores together (never more than the postings cache holds; see ggstack.stores.keywords);
- one store at a time, in one worker thread, so warm-up takes at most one core from requests.

Readiness does not wait for it: `/v1/health` answers as soon as the server can answer a search
correctly, which it can from the start. A search that arrives while its store warms does the
same loads itself (each load happens once: the model registry shares a model's loading, Chroma
loads an index once, and the postings cache keeps whichever read lands) and gets the same
answer it would later. Progress is logged, and shown at `GET /metrics`
(`ggstack_search_warmup_running`, `ggstack_vector_store_warm`).
"""

from __future__ import annotations

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
            budget = self.postings_bytes
            for doc in chosen:
                budget -= await self._warm(doc, budget)
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

    async def _warm(self, doc: dict[str, Any], budget: int) -> int:
        """Warm one store; the bytes of postings it cached. A failure (a model that no longer
        loads, a store dropped meanwhile) is logged and leaves the store to its first search."""
        store_id, started = doc["id"], time.perf_counter()
        try:
            if doc.get("embedding_model"):
                # Loaded, not run: an embedding of its own would share a batch with the first
                # queries' and move their vectors in the last bits (batched float sums), so a
                # search during warm-up would not score exactly as later. Its first embedding
                # costs 20-45 ms once, against 4-10 later.
                await self.models.embedder(doc["embedding_model"])
            cached = await self.vectors.warm(store_id, postings_bytes=max(0, budget))
        except Exception:  # warm-up is an optimisation: the first search still works
            self.stores[store_id] = "failed"
            log.warning("search warm-up: vector store %s not warmed", store_id, exc_info=True)
            return 0
        self.stores[store_id] = "warm"
        log.info("search warm-up: vector store %s warm in %.2f s (vector index, %.1f MiB of keyword postings)",
                 store_id, time.perf_counter() - started, cached / MIB)
        return cached
