"""Health checks: each provider checks what it runs on; /v1/health is all of them at once.

A check names what is down rather than raising, so one provider's failure never hides
another's and the lists and /v1/health can say exactly what is wrong.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio

from ggstack.core.context import Context
from ggstack.core.errors import NotFoundError
from ggstack.providers.catalog import Provider

log = logging.getLogger("ggstack.providers.health")
#: A dependency slower than this to answer a trivial request counts as down.
HEALTH_TIMEOUT_S = 5.0
#: Llama Stack's HealthStatus values (a provider's `health.status`).
OK, ERROR = "OK", "Error"


async def store_problems(name: str, store: Any) -> list[str]:
    """[] when `store.ping()` answers in time, else one line naming the store."""
    try:
        with anyio.fail_after(HEALTH_TIMEOUT_S):
            await store.ping()
    except Exception:
        log.warning("health: %s does not answer", name, exc_info=True)
        return [f"{name} does not answer"]
    return []


def model_problems(ctx: Context, engine: str | None = None) -> list[str]:
    """Loaded models (of one engine, or all) whose worker thread has stopped.

    Each loaded model runs on a thread named model-<id> (ggstack.engines.worker/scheduler).
    """
    running = {thread.name for thread in threading.enumerate() if thread.is_alive()}
    problems = []
    for name in ctx.models.loaded():
        if engine is not None and _engine_of(ctx, name) != engine:
            continue
        if f"model-{name}" not in running:
            problems.append(f"model {name}'s worker has stopped")
    return problems


def _engine_of(ctx: Context, name: str) -> str | None:
    try:
        return ctx.models.get(name).engine
    except NotFoundError:  # unregistered while we looked
        return None


async def server_problems(ctx: Context) -> list[str]:
    """What /v1/health reports: the database, Chroma and every loaded model."""
    return [*await store_problems("database", ctx.metadata), *await store_problems("chroma", ctx.vectors),
            *model_problems(ctx)]


async def provider_problems(provider: Provider, ctx: Context) -> list[str]:
    """What one provider depends on: inference its engine's models, vector_io Chroma and the
    database (store records), everything else the database its records live in."""
    if provider.api == "inference":
        return model_problems(ctx, provider.provider_id)
    problems = await store_problems("database", ctx.metadata)
    if provider.api == "vector_io":
        problems += await store_problems("chroma", ctx.vectors)
    return problems


async def provider_health(provider: Provider, ctx: Context) -> dict[str, Any]:
    """ProviderInfo.health: {"status": "OK"}, or "Error" with a message naming what is down."""
    problems = await provider_problems(provider, ctx)
    if problems:
        return {"status": ERROR, "message": "; ".join(problems)}
    return {"status": OK}
