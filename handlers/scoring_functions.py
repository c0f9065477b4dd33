"""Scoring functions: the built-in `basic::*` and `llm-as-judge::base`, plus registered ones."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_stable import RegisterScoringFunctionRequest
from ggstack.core.context import Context
from ggstack.scoring import ScoringFunctions
from handlers.scoring import invalid_values


async def list_scoring_functions(ctx: Context) -> dict[str, Any]:
    return {"data": await ScoringFunctions(ctx.metadata).list()}


async def get_scoring_function(scoring_fn_id: str, ctx: Context) -> dict[str, Any]:
    return await ScoringFunctions(ctx.metadata).get(scoring_fn_id)


async def register_scoring_function(body: RegisterScoringFunctionRequest, ctx: Context) -> None:
    data = body.model_dump(mode="json", exclude_none=True)
    params = data.get("params")
    if params and params.get("type") == "llm_as_judge":
        ctx.models.get(params["judge_model"])  # an unknown judge is a 404 now, not at the first score
    with invalid_values():
        await ScoringFunctions(ctx.metadata).register(
            data["scoring_fn_id"], description=data["description"], return_type=data["return_type"],
            provider_scoring_fn_id=data.get("provider_scoring_fn_id"), provider_id=data.get("provider_id"),
            params=params)


async def unregister_scoring_function(scoring_fn_id: str, ctx: Context) -> None:
    with invalid_values():
        await ScoringFunctions(ctx.metadata).unregister(scoring_fn_id)
