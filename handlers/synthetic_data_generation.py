"""Synthetic data generation: for each dialog, several sampled answers from a registered chat
model, scored by the model's own confidence and kept by the requested filtering function.

`dialogs` is one conversation; each user turn ends one dialog (the conversation up to it).
Without `model`, the first registered LLM answers (the bundled one on an offline server).
"""

from __future__ import annotations

import math
from typing import Any

from generated.models.llama_stack_stable import SyntheticDataGenerateRequest, SyntheticDataGenerationResponse
from ggstack.core.context import Context
from ggstack.core.errors import InvalidValueError
from ggstack.http.errors import InvalidRequest
from ggstack.inference.generation import Choice, generate
from ggstack.inference.legacy import legacy_messages
from ggstack.inference.options import sampling_options
from ggstack.inference.prompt import plan_chat
from ggstack.synthetic.filters import FILTERS

#: Candidate answers per dialog, their length and temperature. The 1-16 dialogs (user turns)
#: per request are checked by the schema (stable overlay).
CANDIDATES = 4
MAX_TOKENS = 128
TEMPERATURE = 0.8


def default_llm(ctx: Context) -> str:
    for spec in ctx.models.list():
        if spec.model_type == "llm":
            return spec.identifier
    raise InvalidRequest("Invalid value: no LLM is registered; register one or name it in model", param="model")


def confidence(choice: Choice) -> float:
    """exp(mean token logprob): the geometric-mean probability of the tokens written."""
    if not choice.logprobs:
        return 0.0
    return math.exp(choice.sum_logprob / len(choice.logprobs))


async def synthetic_data_generate(body: SyntheticDataGenerateRequest, ctx: Context) -> SyntheticDataGenerationResponse:
    model = body.model or default_llm(ctx)
    try:
        messages = legacy_messages([m.model_dump(mode="json", exclude_none=True) for m in body.dialogs])
    except InvalidValueError as exc:  # an image or a role the chat models cannot read: the reference's words
        raise InvalidRequest(f"Invalid value: dialogs: {exc.message}", param="dialogs") from None
    ends = [i for i, message in enumerate(messages) if message.role == "user"]
    engine = await ctx.models.chat(model)
    keep = FILTERS[body.filtering_function]
    options = sampling_options(temperature=TEMPERATURE, max_tokens=MAX_TOKENS, logprobs=0)
    data: list[dict[str, Any]] = []
    candidates = 0
    for dialog, end in enumerate(ends):
        plan = plan_chat(engine, messages[:end + 1], options)
        choices = (await generate(engine, [plan.prompt], plan.options, n=CANDIDATES)).choices
        scores = [confidence(choice) for choice in choices]
        candidates += len(choices)
        data.extend({"dialog": dialog, "prompt": messages[end].content, "response": choices[i].text,
                     "score": scores[i]} for i in keep(scores))
    statistics = {"model": model, "filtering_function": body.filtering_function, "dialogs": len(ends),
                  "candidates": candidates, "kept": len(data)}
    return SyntheticDataGenerationResponse(synthetic_data=data, statistics=statistics)
