"""Request spans: one per API call, kept in the metadata store so the Telemetry API can query them.

Recording must cost a request nothing it can feel. When the response is ready, what the span
needs is kept as a tuple in a bounded buffer; a flusher task turns the buffer into spans (as
JSON text) and writes them in batches, one transaction per flush, in a worker thread. A per-request write used to make
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
from collections.abc import Callable
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
#: Values as the store's own JSON encoder writes them (json.dumps's defaults).
JSON_TEXT = json.JSONEncoder()
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


def trace_context(traceparent: str | None, new_trace: str) -> tuple[str, str | None]:
    """(trace_id, parent_span_id) from a `traceparent` header, or (`new_trace`, None)."""
    match = TRACEPARENT.match(traceparent.strip().lower()) if traceparent else None
    if match:
        return match.group(1), match.group(2)
    return new_trace, None


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
                rows = await anyio.to_thread.run_sync(span_rows, taken)
                await self._store.put_json(SPAN_KIND, rows)
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


def span_rows(taken: list[Call]) -> list[tuple[str, int, str]]:
    """(span id, created_at, the span as JSON text) for each recorded call, as the store takes them.

    The batch's new trace ids come from one random draw, cut into 32-digit pieces."""
    traces = random_hex(16 * len(taken))
    return [span_row(call, traces[32 * i:32 * i + 32]) for i, call in enumerate(taken)]


#: A string as a JSON literal: the C function `json` itself uses for strings.
quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
#: (operationId, spec path) -> the span's JSON text that only depends on the operation.
_operation_text: dict[tuple[str, str], tuple[str, str]] = {}


def operation_text(operation: Operation) -> tuple[str, str]:
    """`"name":..,"attributes":{"operation_id":..,` and `"http.route":..,`, made once per operation."""
    key = (operation.operation_id, operation.spec_path)
    text = _operation_text.get(key)
    if text is None:
        name = quote(operation.operation_id)
        text = _operation_text[key] = (f'"name":{name},"attributes":{{"operation_id":{name},',
                                       f'"http.route":{quote(operation.spec_path)},')
    return text


def span_row(call: Call, new_trace: str) -> tuple[str, int, str]:
    """One call's span, written straight out as JSON text: ids, ISO times, and token usage
    parsed out of its kept body; `new_trace` is its trace id unless a `traceparent` names one.

    The span is a fixed shape, so its text is one format string with the operation's part
    made once per operation; building a dict and then encoding it cost three times as much,
    in the flusher's thread, holding the GIL the event loop needs. Every value that is not a
    number or an id made here goes through `quote` (the path, the method) or the JSON encoder
    (usage attributes). The keys and values are the ones the Telemetry API reads:
    span_id, trace_id, name, attributes (operation_id, http.method, http.route, http.path,
    http.status_code, and token usage when the answer had some), status, duration_ms,
    start_ns, created_at, start_time, end_time and, under a caller's trace, parent_span_id.
    """
    operation, method, path, status, started_ns, ended_ns, traceparent, body = call
    trace_id, parent = trace_context(traceparent, new_trace) if traceparent else (new_trace, None)
    head, route = operation_text(operation)
    usage = "" if body is None else "".join(
        f",{quote(key)}:{JSON_TEXT.encode(value)}" for key, value in usage_attributes(body).items())
    span_id = new_span_id(ended_ns)
    created_at = started_ns // 1_000_000_000
    end = f',"parent_span_id":"{parent}"}}' if parent else "}"
    text = (f'{{"span_id":"{span_id}","trace_id":"{trace_id}",{head}"http.method":{quote(method)},{route}'
            f'"http.path":{quote(path)},"http.status_code":{status}{usage}}},'
            f'"status":"{"error" if status >= 500 else "ok"}",'
            f'"duration_ms":{(ended_ns - started_ns) / 1e6!r},"start_ns":{started_ns},'
            f'"created_at":{created_at},"start_time":"{iso(started_ns)}","end_time":"{iso(ended_ns)}"{end}')
    return span_id, created_at, text
