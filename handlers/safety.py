"""Running shields: Llama Stack's run-shield and the OpenAI-shaped moderations, on local guard models."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_stable import RunModerationRequest, RunShieldRequest
from ggstack.core.context import Context
from ggstack.core.ids import new_id
from ggstack.http.errors import InvalidRequest
from ggstack.safety import Verdict, check_messages, check_text
from ggstack.safety.check import conversation_of
from ggstack.safety.llama_guard import OPENAI_CATEGORY
from handlers.shields import registry

#: Inputs per moderations request: each is one guard generation.
MAX_MODERATION_INPUTS = 32


async def run_shield(body: RunShieldRequest, ctx: Context) -> dict[str, Any]:
    shields = registry(ctx)
    await shields.for_use(body.shield_id, field="shield_id")  # an unknown shield is named before the messages
    messages = [m.model_dump(mode="json", exclude_none=True) for m in body.messages]
    verdict = await check_messages(shields, ctx.models, body.shield_id, conversation_of(messages))
    violation = verdict.violation()
    return {} if violation is None else {"violation": violation}  # optional, not nullable: safe leaves it out


async def run_moderation(body: RunModerationRequest, ctx: Context) -> dict[str, Any]:
    shields = registry(ctx)
    await shields.for_use(body.model, field="model")  # an unknown guard is named before the input
    inputs = [body.input] if isinstance(body.input, str) else list(body.input)
    if not inputs or len(inputs) > MAX_MODERATION_INPUTS:
        raise InvalidRequest(f"input must hold 1 to {MAX_MODERATION_INPUTS} texts", param="input")
    results = [moderation_result(await check_text(shields, ctx.models, body.model, text)) for text in inputs]
    return {"id": new_id("modr-"), "model": body.model, "results": results}


def moderation_result(verdict: Verdict) -> dict[str, Any]:
    """OpenAI's result shape: categories under OpenAI's names where Llama Guard's map onto them
    (several may share one name: flagged if any is, the highest score), custom categories by name."""
    flagged_names = {c.name for c in verdict.violated}
    categories: dict[str, bool] = {}
    scores: dict[str, float] = {}
    for name, score in verdict.scores.items():
        key = OPENAI_CATEGORY.get(name, name)
        categories[key] = categories.get(key, False) or name in flagged_names
        scores[key] = max(scores.get(key, 0.0), score)
    result: dict[str, Any] = {
        "flagged": verdict.unsafe, "categories": categories, "category_scores": scores,
        "category_applied_input_types": {key: ["text"] for key in categories},
        "metadata": {"violation_type": ",".join(c.code for c in verdict.violated),
                     "unsafe_probability": verdict.unsafe_probability, "shield_id": verdict.shield_id}}
    if verdict.unsafe:
        result["user_message"] = verdict.user_message
    return result
