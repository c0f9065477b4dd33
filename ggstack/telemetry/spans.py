"""Request spans: one per API call, kept in the metadata store so the Telemetry API can query them.

A span is written after its response has been sent (a background task), so recording adds
nothing to the latency a client sees. A W3C `traceparent` header joins the caller's trace;
otherwise each call starts a trace of its own. When a JSON answer carries OpenAI-style
`usage`, its token counts become span attributes, which is what the token metrics add up.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from ggstack.http.operations import Operation

log = logging.getLogger("ggstack.telemetry.spans")

SPAN_KIND = "span"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Reading spans should not itself fill the store with spans.
UNRECORDED_MODULES = frozenset({"telemetry"})


def iso(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns / 1e9, tz=UTC).isoformat()


def trace_context(request: Request) -> tuple[str, str | None]:
    """(trace_id, parent_span_id) from `traceparent`, or a new trace."""
    match = TRACEPARENT.match(request.headers.get("traceparent", "").strip().lower())
    if match:
        return match.group(1), match.group(2)
    return secrets.token_hex(16), None


def usage_attributes(response: Response) -> dict[str, Any]:
    """Token counts and model from a JSON answer's `usage`, when it has them."""
    if response.media_type != "application/json" or not response.body or b'"usage"' not in response.body:
        return {}
    try:
        body = json.loads(response.body)
    except ValueError:
        return {}
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return {}
    found = {name: usage[name] for name in TOKEN_FIELDS if isinstance(usage.get(name), int)}
    if found and isinstance(body.get("model"), str):
        found["model_id"] = body["model"]
    return found


class SpanRecorder:
    """Attaches a background task that stores the span once the response is out.

    The store keeps the newest `max_spans`; every PRUNE_EVERY spans the oldest beyond that go,
    so a long-running server does not grow its database without bound.
    """

    PRUNE_EVERY = 500

    def __init__(self, max_spans: int = 100_000) -> None:
        self.max_spans = max_spans
        self._written = 0

    def record(self, operation: Operation, request: Request, response: Response, started_ns: int) -> Response:
        if operation.module in UNRECORDED_MODULES:
            return response
        ctx = getattr(request.state, "ctx", None)
        if ctx is None or ctx.metadata is None:
            return response
        trace_id, parent = trace_context(request)
        span_id = secrets.token_hex(8)
        attributes: dict[str, Any] = {
            "operation_id": operation.operation_id,
            "http.method": request.method,
            "http.route": operation.spec_path,
            "http.path": request.url.path,
            "http.status_code": response.status_code,
        }
        ended_ns = time.time_ns()
        span = {"span_id": span_id, "trace_id": trace_id, "name": operation.operation_id,
                "start_time": iso(started_ns), "end_time": iso(ended_ns), "attributes": attributes,
                "status": "error" if response.status_code >= 500 else "ok",
                "duration_ms": (ended_ns - started_ns) / 1e6, "start_ns": started_ns}
        if parent:
            span["parent_span_id"] = parent

        async def store() -> None:
            attributes.update(usage_attributes(response))  # parsed here, after the client has its answer
            try:
                await ctx.metadata.put(SPAN_KIND, span_id, span, created_at=started_ns // 1_000_000_000)
                self._written += 1
                if self._written % self.PRUNE_EVERY == 0:
                    await self.prune(ctx.metadata)
            except Exception:
                log.exception("could not store span %s", span_id)

        previous = response.background
        response.background = BackgroundTask(chain, previous, store)
        return response


    async def prune(self, metadata: Any) -> int:
        """Delete the oldest spans beyond `max_spans`; returns how many went."""
        excess = await metadata.count(SPAN_KIND) - self.max_spans
        if excess <= 0:
            return 0
        oldest = await metadata.list(SPAN_KIND, limit=excess, order="asc")
        for span in oldest.items:
            await metadata.delete(SPAN_KIND, span["span_id"])
        return len(oldest.items)


async def chain(previous: BackgroundTask | None, store: Any) -> None:
    if previous is not None:
        await previous()
    await store()
