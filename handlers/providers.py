"""Providers: which backend serves each API, and whether it is healthy."""

from __future__ import annotations

from typing import Any

from ggstack.core.context import Context
from ggstack.http.errors import NotFound
from ggstack.providers.catalog import Provider, configured_providers


def describe(provider: Provider) -> dict[str, Any]:
    return {"api": provider.api, "provider_id": provider.provider_id, "provider_type": provider.provider_type,
            "config": provider.config, "health": {"status": "OK"}}


async def list_providers(ctx: Context) -> dict[str, Any]:
    return {"data": [describe(p) for p in configured_providers(ctx.settings)]}


async def inspect_provider(provider_id: str, ctx: Context) -> dict[str, Any]:
    for provider in configured_providers(ctx.settings):
        if provider.provider_id == provider_id:
            return describe(provider)
    raise NotFound(f"Provider '{provider_id}' not found")
