"""The application factory: generated routes bound to handlers, plus docs and error rendering."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from generated.routes import OPERATIONS, all_routes
from ggstack.core.access import Principal, key_digest
from ggstack.core.config import Settings
from ggstack.core.lifespan import open_context
from ggstack.http.auth import ApiKeyAuth
from ggstack.http.docs import docs_routes
from ggstack.http.errors import ApiError, MethodNotAllowed, NotFound
from ggstack.http.guard import BrowserGuard, HostPolicy
from ggstack.http.render import error_response, error_shape_for_path
from ggstack.http.router import PrefixRouter
from ggstack.http.routing import EndpointBuilder
from ggstack.telemetry.metrics import HttpMetrics, MetricsMiddleware, metrics_route
from ggstack.telemetry.spans import SpanRecorder


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    validator = None
    if settings.validate_responses:
        from ggstack.http.validation import ResponseValidator

        validator = ResponseValidator()
    recorder = (SpanRecorder(settings.telemetry_max_spans, max_buffered=settings.telemetry_buffer)
                if settings.telemetry else None)
    builder = EndpointBuilder(validator=validator, recorder=recorder)
    metrics = HttpMetrics()
    routes = [*docs_routes(), metrics_route(metrics), *all_routes(builder)]
    missing = frozenset(op.operation_id for op in builder.missing)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_context(settings, OPERATIONS, missing) as ctx, frozen_startup_objects(), short_gil_turns():
            if recorder is None:
                yield {"ctx": ctx}
                return
            ctx.spans = recorder
            async with anyio.create_task_group() as tasks:
                await tasks.start(recorder.run, ctx.metadata)
                try:
                    yield {"ctx": ctx}
                finally:
                    tasks.cancel_scope.cancel()
                    await recorder.close()

    stack = [Middleware(MetricsMiddleware, metrics=metrics, route_name=route_name), *middleware(settings)]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=stack,
                    exception_handlers={HTTPException: http_exception})
    app.router = PrefixRouter(routes=routes, lifespan=lifespan)
    return app


def route_name(endpoint: Any) -> str | None:
    """The /metrics label of the route that served a request: an operation's endpoint is named
    by its operationId (ggstack.http.routing.OperationApp), ggstack's own routes by function."""
    return getattr(endpoint, "__name__", None)


@asynccontextmanager
async def frozen_startup_objects() -> AsyncIterator[None]:
    """Keep everything alive after start-up out of the garbage collector's reach while serving.

    The generated models, specs, Chroma and the engines leave hundreds of thousands of
    long-lived objects, and every full collection walked all of them: 0.2-0.5 s with the event
    loop stopped, which was the whole of the cheapest routes' p99 under load. Frozen objects
    are skipped by collections (they live as long as the server anyway); what requests allocate
    is collected as before. At shutdown they are handed back, so a process that runs several
    apps one after the other (tests) can still free the earlier ones.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


#: Seconds a thread may hold the GIL while another waits for it (Python's default is 5 ms).
GIL_TURN_S = 0.0005


@asynccontextmanager
async def short_gil_turns() -> AsyncIterator[None]:
    """Let the event loop take the GIL back from a busy worker thread within half a millisecond.

    Worker threads run Python too (the telemetry flusher building and writing hundreds of spans,
    Chroma's client, ingestion): with the default 5 ms turn, each time one of them took the GIL
    every open request waited up to 5 ms for it. Under 16 connections that held the cheapest
    routes to 6.4-7.0k req/s; with 0.5 ms turns the same server answered 8.5-9.4k (p99 no worse).
    More frequent hand-overs cost microseconds. The previous interval is restored at shutdown.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(GIL_TURN_S)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: the Host/Origin guard, CORS for the configured origins only (its
    preflights carry no key), then API keys when any are configured."""
    policy = HostPolicy(settings.allowed_hosts, settings.allowed_origins, bind_host=settings.host)
    stack = [Middleware(BrowserGuard, policy=policy)]
    if settings.allowed_origins:
        stack.append(Middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_methods=["*"],
                                allow_headers=["*"], expose_headers=["Retry-After"]))
    keys = api_keys(settings)
    if keys:
        stack.append(Middleware(ApiKeyAuth, keys=keys))
    return stack


def api_keys(settings: Settings) -> dict[str, Principal]:
    """Digest -> who; the plain-text env key is hashed here and not kept."""
    keys = {key.sha256: Principal(key.name, key.admin) for key in settings.api_keys}
    if settings.api_key is not None:
        keys[key_digest(settings.api_key.get_secret_value())] = Principal("admin", admin=True)
    return keys


def allowed_methods(request: Request) -> list[str]:
    """Every method any route offers at this path (Starlette's own 405 names only one route's)."""
    methods: set[str] = set()
    scope = {**request.scope, "method": "__NONE__"}
    for route in request.app.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, in the error shape of the path's API family."""
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound(f"No route for {request.method} {request.url.path}")
    elif exc.status_code == 405:
        allowed = allowed_methods(request)
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}",
                                 headers={"Allow": ", ".join(allowed)})
    else:
        error = ApiError(exc.detail or "HTTP error")
        error.status = exc.status_code
    return error_response(error, error_shape_for_path(request.url.path))
