"""Prometheus metrics at `GET /metrics` (text format 0.0.4), written here rather than through
prometheus_client: a handful of counters and one histogram kept by one middleware on the event loop
need no locks and no process-global registry, and the rest is read from the engines at scrape time.

Request metrics are labelled by operationId (the route's name), so they agree with route tables
and logs; `unmatched` collects answers no route produced (404s, Host refusals). `/metrics` is
ggstack's own route, in no API document, so contract tests and clients never see it.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from ggstack.search.warmup import SearchWarmup

#: Seconds; generation requests run for seconds to minutes, cheap routes for milliseconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    observed: int = 0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.observed += 1
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break


@dataclass
class HttpMetrics:
    """Answers by (route, method, status) and their durations by (route, method)."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    durations: dict[tuple[str, str], Histogram] = field(default_factory=lambda: defaultdict(Histogram))

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        """Per answer, on the event loop: keys stay as they come (the status a number) and
        become label text only when /metrics is read."""
        self.requests[(route, method, status)] += 1
        self.durations[(route, method)].observe(seconds)


class MetricsMiddleware:
    """Times each HTTP request from arrival to its last body byte (a stream's whole length)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, route_name: Callable[[Any], str | None]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_name = route_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The router writes the matched endpoint into this same scope.
            route = self.route_name(scope.get("endpoint")) or "unmatched"
            self.metrics.record(route, scope["method"], status, time.perf_counter() - started)


# ---- the text format ----------------------------------------------------------------------------


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{label_value(v)}"' for k, v in labels.items())
    number = repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def http_lines(metrics: HttpMetrics) -> list[str]:
    requests = [sample("ggstack_http_requests_total", {"route": r, "method": m, "status": str(s)}, n)
                for (r, m, s), n in sorted(metrics.requests.items())]
    durations = []
    for (route, method), hist in sorted(metrics.durations.items()):
        labels = {"route": route, "method": method}
        running = 0
        for bound, count in zip(BUCKETS, hist.counts, strict=True):
            running += count
            durations.append(sample("ggstack_http_request_duration_seconds_bucket", {**labels, "le": str(bound)},
                                    running))
        durations.append(sample("ggstack_http_request_duration_seconds_bucket", {**labels, "le": "+Inf"},
                                hist.observed))
        durations.append(sample("ggstack_http_request_duration_seconds_sum", labels, round(hist.total, 6)))
        durations.append(sample("ggstack_http_request_duration_seconds_count", labels, hist.observed))
    return [*family("ggstack_http_requests_total", "counter", "HTTP answers by operationId, method and status.",
                    requests),
            *family("ggstack_http_request_duration_seconds", "histogram",
                    "Time from a request's arrival to its answer's last byte.", durations)]


def engine_lines(engines: dict[str, Any]) -> list[str]:
    """Per loaded model: tokens generated, slots, slots in use and requests waiting for one."""
    loaded = [sample("ggstack_model_loaded", {"model": name}, 1) for name in sorted(engines)]
    tokens, slots, busy, queued = [], [], [], []
    for name in sorted(engines):
        engine = engines[name]
        if hasattr(engine, "tokens_generated"):
            tokens.append(sample("ggstack_tokens_generated_total", {"model": name}, engine.tokens_generated))
        load = engine.usage() if hasattr(engine, "usage") else None
        if load is not None:
            slots.append(sample("ggstack_model_slots", {"model": name}, load.slots))
            busy.append(sample("ggstack_model_slots_in_use", {"model": name}, load.busy))
            queued.append(sample("ggstack_model_queue_depth", {"model": name}, load.queued))
    return [*family("ggstack_model_loaded", "gauge", "Models whose engine is loaded.", loaded),
            *family("ggstack_tokens_generated_total", "counter",
                    "Completion tokens of finished generations since the model was loaded.", tokens),
            *family("ggstack_model_slots", "gauge", "Sequences a chat model decodes at once (parallel).", slots),
            *family("ggstack_model_slots_in_use", "gauge", "Slots holding a request now.", busy),
            *family("ggstack_model_queue_depth", "gauge", "Requests waiting for a free slot.", queued)]


def warmup_lines(warmup: SearchWarmup | None) -> list[str]:
    """The start-up search warm-up (ggstack.search.warmup): running or not, and each store it chose."""
    running = [sample("ggstack_search_warmup_running", {}, int(warmup is not None and warmup.running))]
    states = warmup.stores if warmup is not None else {}
    stores = [sample("ggstack_vector_store_warm", {"vector_store": store_id}, int(state == "warm"))
              for store_id, state in sorted(states.items())]
    return [*family("ggstack_search_warmup_running", "gauge",
                    "1 while the start-up warm-up of vector-store search runs.", running),
            *family("ggstack_vector_store_warm", "gauge",
                    "Stores the warm-up chose: 1 once its indexes are loaded, 0 before (or if it failed).", stores)]


def exposition(metrics: HttpMetrics, engines: dict[str, Any], ingest_backlog: int,
               warmup: SearchWarmup | None = None) -> str:
    lines = [*http_lines(metrics), *engine_lines(engines),
             *family("ggstack_ingest_backlog", "gauge", "Vector-store files queued or being indexed.",
                     [sample("ggstack_ingest_backlog", {}, ingest_backlog)]),
             *warmup_lines(warmup)]
    return "\n".join(lines) + "\n"


def metrics_route(metrics: HttpMetrics) -> Route:
    async def metrics_endpoint(request: Request) -> Response:
        ctx = request.state.ctx
        body = exposition(metrics, ctx.models.engines(), ctx.ingest.backlog(), ctx.warmup)
        return Response(body, media_type=CONTENT_TYPE)

    return Route("/metrics", metrics_endpoint, methods=["GET"], name="metrics")
