"""Shields: named guards (an LLM registered here plus its categories), persisted in the metadata store."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_stable import RegisterShieldRequest
from ggstack.core.context import Context
from ggstack.safety import ShieldRegistry


def registry(ctx: Context) -> ShieldRegistry:
    return ShieldRegistry(ctx.metadata, ctx.models)


async def register_shield(body: RegisterShieldRequest, ctx: Context) -> dict[str, Any]:
    return await registry(ctx).register(body.shield_id, provider_shield_id=body.provider_shield_id,
                                        provider_id=body.provider_id, params=body.params)


async def list_shields(ctx: Context) -> dict[str, Any]:
    return {"data": await registry(ctx).list()}


async def get_shield(identifier: str, ctx: Context) -> dict[str, Any]:
    return await registry(ctx).get(identifier)


async def unregister_shield(identifier: str, ctx: Context) -> None:
    await registry(ctx).unregister(identifier)
