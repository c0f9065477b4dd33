"""Span retention: a long-running server keeps only the newest spans."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from ggstack.stores.sql import SqlMetadataStore
from ggstack.telemetry.spans import SPAN_KIND, SpanRecorder

pytestmark = pytest.mark.anyio


async def test_prune_keeps_the_newest_spans(tmp_path: Path) -> None:
    store = await anyio.to_thread.run_sync(SqlMetadataStore.open, f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        for i in range(7):
            await store.put(SPAN_KIND, f"s{i}", {"span_id": f"s{i}", "trace_id": "t"}, created_at=1000 + i)
        assert await SpanRecorder(max_spans=3).prune(store) == 4
        left = await store.list(SPAN_KIND, limit=None, order="asc")
        assert [s["span_id"] for s in left.items] == ["s4", "s5", "s6"]
        assert await SpanRecorder(max_spans=3).prune(store) == 0
    finally:
        await anyio.to_thread.run_sync(store.close)
