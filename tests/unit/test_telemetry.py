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


class CountingStore:
    """The real SQL store, counting the batches the recorder writes."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store
        self.batches: list[int] = []

    async def put_json(self, kind, rows):
        self.batches.append(len(rows))
        await self.store.put_json(kind, rows)

    def __getattr__(self, name):
        return getattr(self.store, name)


def fake_call(path: str = "/v1/health", body: bytes = b'{"status":"OK"}', traceparent: str | None = None):
    from starlette.requests import Request
    from starlette.responses import Response

    from generated.routes import OPERATIONS

    headers = [(b"traceparent", traceparent.encode())] if traceparent else []
    request = Request({"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": b"",
                       "scheme": "http", "server": ("127.0.0.1", 80), "root_path": ""})
    operation = next(op for op in OPERATIONS if op.operation_id == "health")
    return operation, request, Response(body, media_type="application/json")


@pytest.fixture
async def sql_store(tmp_path: Path):
    store = await anyio.to_thread.run_sync(SqlMetadataStore.open, f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield store
    await anyio.to_thread.run_sync(store.close)


async def test_spans_wait_in_memory_and_are_written_in_one_batch(sql_store) -> None:
    store = CountingStore(sql_store)
    recorder = SpanRecorder(interval=3600)
    async with anyio.create_task_group() as tasks:
        await tasks.start(recorder.run, store)
        for _ in range(5):
            recorder.record(*fake_call(), started_ns=1_700_000_000_000_000_000)
        usage = b'{"model":"m","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
        recorder.record(*fake_call(body=usage), started_ns=1_700_000_000_000_000_000)
        assert await store.count(SPAN_KIND) == 0  # nothing waited on the store
        assert await recorder.flush() == 6
        assert store.batches == [6]
        spans = (await store.list(SPAN_KIND, limit=None, order="asc")).items
        assert len({s["span_id"] for s in spans}) == 6
        assert spans[-1]["attributes"]["total_tokens"] == 7
        assert spans[-1]["attributes"]["model_id"] == "m"
        assert spans[0]["start_time"].startswith("2023-11-14T22:13:20")
        tasks.cancel_scope.cancel()


async def test_a_span_written_as_text_reads_back_whole(sql_store) -> None:
    """Spans are written as JSON text made field by field; what the store reads back is the span:
    escaped path, the caller's trace, token usage, an error status."""
    recorder = SpanRecorder(interval=3600)
    async with anyio.create_task_group() as tasks:
        await tasks.start(recorder.run, sql_store)
        usage = b'{"model":"m\\u00e9","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
        trace = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        operation, request, response = fake_call(path='/v1/health"\\\u00e9\n', body=usage, traceparent=trace)
        response.status_code = 503
        recorder.record(operation, request, response, started_ns=1_700_000_000_000_000_000)
        assert await recorder.flush() == 1
        tasks.cancel_scope.cancel()
    (span,) = (await sql_store.list(SPAN_KIND, limit=None)).items
    assert set(span) == {"span_id", "trace_id", "parent_span_id", "name", "attributes", "status", "duration_ms",
                         "start_ns", "created_at", "start_time", "end_time"}
    assert len(span["span_id"]) == 16 and (await sql_store.get(SPAN_KIND, span["span_id"])) == span
    assert (span["trace_id"], span["parent_span_id"], span["name"], span["status"]) == ("ab" * 16, "cd" * 8,
                                                                                       "health", "error")
    assert span["attributes"] == {"operation_id": "health", "http.method": "GET", "http.route": "/v1/health",
                                  "http.path": '/v1/health"\\\u00e9\n', "http.status_code": 503,
                                  "prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
                                  "model_id": "m\u00e9"}
    assert (span["start_ns"], span["created_at"]) == (1_700_000_000_000_000_000, 1_700_000_000)
    assert span["start_time"] == "2023-11-14T22:13:20+00:00" and span["end_time"] > span["start_time"]
    assert isinstance(span["duration_ms"], float) and span["duration_ms"] > 0


async def test_the_buffer_is_bounded_and_shutdown_flushes_it(sql_store) -> None:
    recorder = SpanRecorder(max_buffered=3, interval=3600)
    async with anyio.create_task_group() as tasks:
        await tasks.start(recorder.run, sql_store)
        trace = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        for _ in range(5):
            recorder.record(*fake_call(traceparent=trace), started_ns=1_700_000_000_000_000_000)
        assert recorder.dropped == 2
        tasks.cancel_scope.cancel()
    await recorder.close()
    spans = (await sql_store.list(SPAN_KIND, limit=None, order="asc")).items
    assert len(spans) == 3
    assert {(s["trace_id"], s["parent_span_id"]) for s in spans} == {("ab" * 16, "cd" * 8)}


async def test_a_full_batch_wakes_the_flusher(sql_store) -> None:
    recorder = SpanRecorder(batch=4, interval=3600)
    async with anyio.create_task_group() as tasks:
        await tasks.start(recorder.run, sql_store)
        for _ in range(4):
            recorder.record(*fake_call(), started_ns=1_700_000_000_000_000_000)
        with anyio.fail_after(30):
            while await sql_store.count(SPAN_KIND) < 4:
                await anyio.sleep(0.01)
        tasks.cancel_scope.cancel()


async def test_prune_deletes_more_spans_than_one_statement_takes(sql_store) -> None:
    for i in range(1200):
        await sql_store.put(SPAN_KIND, f"s{i:04}", {"span_id": f"s{i:04}", "trace_id": "t"}, created_at=1000 + i)
    assert await SpanRecorder(max_spans=100).prune(sql_store) == 1100
    left = await sql_store.list(SPAN_KIND, limit=None, order="asc")
    assert [s["span_id"] for s in left.items] == [f"s{i:04}" for i in range(1100, 1200)]
