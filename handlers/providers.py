"""Providers: which backend serves each API, and whether it is healthy (its own checks)."""

from __future__ import annotations

from typing import Any

from ggstack.core.context import Context
from ggstack.http.errors import NotFound
from ggstack.providers.catalog import Provider, configured_providers
from ggstack.providers.health import provider_health


async def describe(provider: Provider, ctx: Context) -> dict[str, Any]:
    return {"api": provider.api, "provider_id": provider.provider_id, "provider_type": provider.provider_type,
            "config": provider.config, "health": await provider_health(provider, ctx)}


async def list_providers(ctx: Context) -> dict[str, Any]:
    return {"data": [await describe(p, ctx) for p in configured_providers(ctx.settings)]}


async def inspect_provider(provider_id: str, ctx: Context) -> dict[str, Any]:
    for provider in configured_providers(ctx.settings):
        if provider.provider_id == provider_id:
            return await describe(provider, ctx)
    raise NotFound(f"Provider '{provider_id}' not found")
