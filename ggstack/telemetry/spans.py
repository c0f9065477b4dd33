"""Request spans: one per API call, kept in the metadata store so the Telemetry API can query them.

Recording must cost a request nothing it can feel. A span is built in memory when the
response is ready and appended to a bounded buffer; a flusher task writes the buffer in
batches, one transaction per flush, off the event loop. A per-request write used to make
every call queue on SQLite's write lock (`BEGIN IMMEDIATE`), which halved the rate of the
cheapest routes. Readers of spans call `flush()` first, so a query sees every call that
answered before it; shutdown flushes what is left.

A W3C `traceparent` header joins the caller's trace; otherwise each call starts a trace of
its own. When a JSON answer carries OpenAI-style `usage`, its token counts become span
attributes (parsed at flush time, not while the client waits), which is what the token
metrics add up.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ggstack.http.operations import Operation
from ggstack.stores.base import MetadataStore

log = logging.getLogger("ggstack.telemetry.spans")

SPAN_KIND = "span"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Reading spans should not itself fill the store with spans.
UNRECORDED_MODULES = frozenset({"telemetry"})
# Trace and span ids need to be unique, not secret (W3C trace context asks for random, not
# unguessable). os.urandom, a system call each, took up to 0.4 ms a call in the loaded server.
IDS = random.Random()


def random_hex(n_bytes: int) -> str:
    return f"{IDS.getrandbits(8 * n_bytes):0{2 * n_bytes}x}"


#: The low 20 bits of span ids: a per-process counter from a random start.
SPAN_COUNTER = itertools.count(IDS.getrandbits(20))


def new_span_id(at_ns: int | None = None) -> str:
    """16 hex digits: milliseconds since the epoch (44 bits), then the counter (20 bits).

    Spans are stored under their id in a unique index. Random ids landed all over that index,
    so at 100k stored spans each insert read index pages outside SQLite's cache and the
    flusher cost 35-60 us of CPU per span; ids that grow with time append at the index's end
    (15-25 us). Unique within a process (a million spans in one millisecond would be needed
    to wrap); another process would have to hit the same millisecond and counter value.
    """
    at_ns = time.time_ns() if at_ns is None else at_ns
    return f"{(at_ns // 1_000_000) & 0xFFF_FFFF_FFFF:011x}{next(SPAN_COUNTER) & 0xFFFFF:05x}"


#: (epoch second, its ISO date and time): two per span, nearly always the same second.
_iso_second: tuple[int, str] = (-1, "")


def iso(epoch_ns: int) -> str:
    """`datetime.isoformat()` in UTC to the microsecond, each second's date and time formatted once
    (formatting a datetime was most of the flusher's Python time per span)."""
    global _iso_second
    second, micros = divmod((epoch_ns + 500) // 1000, 1_000_000)  # to the nearest microsecond
    known, text = _iso_second
    if known != second:
        text = datetime.fromtimestamp(second, tz=UTC).isoformat()[:-6]  # without "+00:00"
        _iso_second = (second, text)
    return f"{text}.{micros:06d}+00:00" if micros else f"{text}+00:00"


def trace_context(traceparent: str | None) -> tuple[str, str | None]:
    """(trace_id, parent_span_id) from a `traceparent` header, or a new trace."""
    match = TRACEPARENT.match((traceparent or "").strip().lower())
    if match:
        return match.group(1), match.group(2)
    return random_hex(16), None


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a (lower-case) header, straight from the ASGI scope."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def usage_body(response: Response) -> bytes | None:
    """The body to look for `usage` in later, when it may have some (a cheap bytes test)."""
    body = getattr(response, "body", None)
    if response.media_type != "application/json" or not body or b'"usage"' not in body:
        return None
    return bytes(body)


def usage_attributes(body: bytes | None) -> dict[str, Any]:
    """Token counts and model from a JSON answer's `usage`, when it has them."""
    if body is None:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return {}
    found = {name: usage[name] for name in TOKEN_FIELDS if isinstance(usage.get(name), int)}
    if found and isinstance(data.get("model"), str):
        found["model_id"] = data["model"]
    return found


class Call(NamedTuple):
    """What a span is made of, kept per API call until the next flush."""

    operation: Operation
    method: str
    path: str
    status: int
    started_ns: int
    ended_ns: int
    traceparent: str | None
    body: bytes | None  # a JSON answer that may carry `usage`


class SpanRecorder:
    """Buffers spans in memory and writes them in batches; `run()` is the flusher task.

    The buffer holds at most `max_buffered` spans. If the store falls that far behind, newer
    spans are dropped (and counted in the log) rather than letting memory grow: telemetry is
    never worth an out-of-memory server. The store keeps the newest `max_spans`: after every
    `prune_every` spans written (a twentieth of `max_spans`, at least PRUNE_EVERY) the oldest
    beyond that go, so the store may hold up to 5% more for a moment. Counting the spans to
    prune every 500 (twenty times a second under load) cost more than writing them.
    """

    PRUNE_EVERY = 500

    def __init__(self, max_spans: int = 100_000, *, max_buffered: int = 10_000, batch: int = 500,
                 interval: float = 0.5) -> None:
        self.max_spans = max_spans
        self.max_buffered = max_buffered
        self.batch = batch
        self.interval = interval
        self.prune_every = max(self.PRUNE_EVERY, max_spans // 20)
        self.dropped = 0
        self._buffer: list[Call] = []
        self._written = 0
        self._store: MetadataStore | None = None
        self._lock: anyio.Lock | None = None
        self._wake: anyio.Event | None = None

    def record(self, operation: Operation, request: Request, response: Response, started_ns: int) -> Response:
        """Keep what the span needs; ids, times and the span itself are made at flush time, in
        the flusher's thread, so the request pays for a tuple and not for a span."""
        if operation.module in UNRECORDED_MODULES:
            return response
        if len(self._buffer) >= self.max_buffered:
            self.dropped += 1
            return response
        scope = request.scope
        self._buffer.append(Call(operation, scope["method"], scope["path"], response.status_code, started_ns,
                                 time.time_ns(), header(scope, b"traceparent"), usage_body(response)))
        if len(self._buffer) >= self.batch and self._wake is not None:
            self._wake.set()
        return response

    async def run(self, store: MetadataStore, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Flush every `interval` seconds, or sooner when a batch is full; cancel to stop."""
        self._store, self._lock = store, anyio.Lock()
        task_status.started()
        while True:
            self._wake = anyio.Event()
            with anyio.move_on_after(self.interval):
                await self._wake.wait()
            await self.flush()

    async def flush(self) -> int:
        """Write every buffered span in one transaction; returns how many were written.

        The lock makes a reader's flush wait for a flush already in flight, so "flushed"
        means every span recorded before the call is in the store.
        """
        if self._store is None or self._lock is None:
            return 0
        async with self._lock:
            taken, self._buffer = self._buffer, []
            if self.dropped:
                log.warning("telemetry buffer was full: %d spans dropped", self.dropped)
                self.dropped = 0
            if not taken:
                return 0
            try:
                docs = await anyio.to_thread.run_sync(finished, taken)
                await self._store.put_many(SPAN_KIND, docs)
            except Exception:
                log.exception("could not store %d spans", len(taken))
                return 0
            before, self._written = self._written, self._written + len(taken)
            if before // self.prune_every != self._written // self.prune_every:
                await self.prune(self._store)
            return len(taken)

    async def close(self) -> None:
        """The last flush, at shutdown, before the store closes."""
        with anyio.CancelScope(shield=True):
            await self.flush()

    async def prune(self, metadata: MetadataStore) -> int:
        """Delete the oldest spans beyond `max_spans`; returns how many went.

        One statement that reads no span: listing the excess to delete it by id decoded
        thousands of spans per prune, about a third of what writing them cost."""
        return await metadata.delete_oldest(SPAN_KIND, self.max_spans)


def finished(taken: list[Call]) -> list[tuple[str, dict[str, Any]]]:
    """(id, span) pairs ready to store, built from the recorded calls."""
    return [(span["span_id"], span) for span in map(span_of, taken)]


def span_of(call: Call) -> dict[str, Any]:
    """The span of one call: ids, ISO times, and token usage parsed out of its kept body."""
    trace_id, parent = trace_context(call.traceparent)
    operation = call.operation
    span = {"span_id": new_span_id(call.ended_ns), "trace_id": trace_id, "name": operation.operation_id,
            "attributes": {"operation_id": operation.operation_id, "http.method": call.method,
                           "http.route": operation.spec_path, "http.path": call.path,
                           "http.status_code": call.status, **usage_attributes(call.body)},
            "status": "error" if call.status >= 500 else "ok",
            "duration_ms": (call.ended_ns - call.started_ns) / 1e6, "start_ns": call.started_ns,
            "created_at": call.started_ns // 1_000_000_000,
            "start_time": iso(call.started_ns), "end_time": iso(call.ended_ns)}
    if parent:
        span["parent_span_id"] = parent
    return span
