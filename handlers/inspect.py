"""Inspect: health, version and the route table, as llama-stack-client reads them."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio

import ggstack
from ggstack.core.context import Context
from ggstack.http.errors import Unavailable
from ggstack.providers.catalog import MODULE_API, configured_providers, provider_types_for

log = logging.getLogger("ggstack.handlers.inspect")
#: A dependency slower than this to answer a trivial request counts as down.
HEALTH_TIMEOUT_S = 5.0


async def health(ctx: Context) -> dict[str, Any]:
    """OK only when the database and Chroma answer and every loaded model's thread runs;
    otherwise 503 naming what is down (the spec's HealthInfo has no room for details)."""
    problems = await health_problems(ctx)
    if problems:
        raise Unavailable(f"degraded: {'; '.join(problems)}")
    return {"status": "OK"}


async def health_problems(ctx: Context) -> list[str]:
    problems = []
    for name, store in (("database", ctx.metadata), ("chroma", ctx.vectors)):
        try:
            with anyio.fail_after(HEALTH_TIMEOUT_S):
                await store.ping()
        except Exception:
            log.warning("health: %s does not answer", name, exc_info=True)
            problems.append(f"{name} does not answer")
    # Each loaded model runs on a thread named model-<id> (ggstack.engines.worker/scheduler).
    running = {thread.name for thread in threading.enumerate() if thread.is_alive()}
    problems += [f"model {name}'s worker has stopped" for name in ctx.models.loaded()
                 if f"model-{name}" not in running]
    return problems


async def version(ctx: Context) -> dict[str, Any]:
    return {"version": ggstack.__version__}


async def list_routes(ctx: Context) -> dict[str, Any]:
    """Only implemented operations: a route that answers 501 is not one a client can use."""
    providers = configured_providers(ctx.settings)
    data = []
    for op in ctx.operations:
        if op.operation_id in ctx.missing:
            continue
        types = provider_types_for(MODULE_API.get(op.module, op.module), providers)
        data.extend({"route": path, "method": op.method, "provider_types": types} for path in op.paths)
    return {"data": data}
