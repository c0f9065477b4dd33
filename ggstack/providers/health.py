"""Health checks: each provider checks what it runs on; /v1/health is all of them at once.

A check names what is down rather than raising, so one provider's failure never hides
another's and the lists and /v1/health can say exactly what is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from time import monotonic
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


class ServerHealth:
    """One server's /v1/health checks: the one running (shared by the probes waiting for it) and
    when the last clean one finished."""

    def __init__(self) -> None:
        self.running: asyncio.Future[list[str]] | None = None
        self.clean_at: float | None = None

    def start(self, ctx: Context) -> asyncio.Future[list[str]]:
        if self.running is None:
            self.running = asyncio.ensure_future(check_server(ctx))
            self.running.add_done_callback(self._finished)
        return self.running

    def _finished(self, check: asyncio.Future[list[str]]) -> None:
        """A clean check is kept for the TTL; one that failed or found problems is not."""
        self.running = None
        clean = not check.cancelled() and check.exception() is None and not check.result()
        self.clean_at = monotonic() if clean else None



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
        served_by = _engine_of(ctx, name)
        if (engine is not None and served_by != engine) or served_by == "remote":
            continue  # a remote model has no worker here: its provider's check covers it
        if f"model-{name}" not in running:
            problems.append(f"model {name}'s worker has stopped")
    return problems


def _engine_of(ctx: Context, name: str) -> str | None:
    try:
        return ctx.models.get(name).engine
    except NotFoundError:  # unregistered while we looked
        return None


async def server_problems(ctx: Context, ttl: float | None = None) -> list[str]:
    """What /v1/health reports: the database, Chroma and every loaded model, down now.

    Concurrent callers share one check rather than each pinging the database and Chroma (two
    thread-pool hops a request held a burst of health probes to a tenth of the rate of a
    static route), and a check that finished clean less than `ttl` seconds ago (the run config's
    `health_ttl_s`, 1 s by default) answers the probes after it: under load, checking for each
    probe was most of the route's cost, and a second-old answer tells a load balancer the same.
    Once that answer is half its TTL old, a probe starts the next check without waiting for it,
    so steady probes never wait for one (a check under load took up to 250 ms, the route's p99).
    A check that found a problem is never kept: the probes after it check again.
    """
    ttl = ctx.settings.health_ttl_s if ttl is None else ttl
    health = ctx.health = ctx.health or ServerHealth()
    age = None if health.clean_at is None else monotonic() - health.clean_at
    if age is not None and age < ttl:
        if age >= ttl / 2:
            health.start(ctx)  # the next check, ahead of need; nobody waits for it
        return []
    # Shielded: a caller that disconnects must not cancel the check the others wait on.
    return list(await asyncio.shield(health.start(ctx)))


async def check_server(ctx: Context) -> list[str]:
    """Both stores are pinged at the same time, so a check costs one thread-pool round trip."""
    found: dict[str, list[str]] = {}

    async def check(name: str, store: Any) -> None:
        found[name] = await store_problems(name, store)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(check, "database", ctx.metadata)
        tasks.start_soon(check, "chroma", ctx.vectors)
    return [*found["database"], *found["chroma"], *model_problems(ctx)]


async def provider_problems(provider: Provider, ctx: Context) -> list[str]:
    """What one provider depends on: inference its engine's models, vector_io Chroma and the
    database (store records), everything else the database its records live in."""
    if provider.api == "inference":
        remote = ctx.models.providers.get(provider.provider_id)
        if remote is not None:  # a remote server: whether it answers now
            return await remote.problems()
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
