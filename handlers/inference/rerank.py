"""Rerank: a cross-encoder scores each item with the query; the answer lists the items by score.

Only text is read (strings and text parts): the rerankers llama.cpp runs are text models, so an
image part is a 400 that names it. A reranker is a model registered with `model_type: rerank`
(a GGUF with rank pooling, see `ggstack.engines.rerank`); while none is registered, whatever the
request names, the 400 says how to register one, since no model here could answer.
"""

from __future__ import annotations

from generated.models.llama_stack_experimental import (
    OpenAIChatCompletionContentPartImageParam,
    OpenAIChatCompletionContentPartTextParam,
    RerankData,
    RerankRequest,
    RerankResponse,
)
from ggstack.core.context import Context
from ggstack.core.errors import ContextOverflowError
from ggstack.http.errors import Fields, InvalidRequest, naming

#: A pair longer than the model reads is about `items` (the query alone is checked the same way).
RERANK_FIELDS: Fields = {ContextOverflowError: "items"}
HOW_TO_REGISTER = ("register a cross-encoder GGUF (one with rank pooling, as llama.cpp's rerankers have) with "
                   "POST /v1/models {\"model_id\": ..., \"provider_model_id\": <file under a model directory>, "
                   "\"model_type\": \"rerank\"}")

Part = str | OpenAIChatCompletionContentPartTextParam | OpenAIChatCompletionContentPartImageParam


def part_text(part: Part, param: str) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, OpenAIChatCompletionContentPartTextParam):
        return part.text
    raise InvalidRequest(f"{param} is an image; the rerank models here read text only", param=param)


def rerank_model(ctx: Context, model: str) -> None:
    """Refuse a model that cannot rerank, saying which ones can (or how to add one)."""
    rerankers = [spec.identifier for spec in ctx.models.list() if spec.model_type == "rerank"]
    if not rerankers:
        raise InvalidRequest(f"no rerank model is registered; {HOW_TO_REGISTER}", param="model")
    spec = ctx.models.get(model)  # an unknown model is a 404
    if spec.model_type != "rerank":
        raise InvalidRequest(f"Model '{model}' is an {spec.model_type} model, not a rerank model; rerank models: "
                             f"{', '.join(rerankers)}", param="model")


async def rerank(body: RerankRequest, ctx: Context) -> RerankResponse:
    rerank_model(ctx, body.model)
    query = part_text(body.query, "query")
    if not query:
        raise InvalidRequest("query must not be empty", param="query")
    items = [part_text(item, f"items[{i}]") for i, item in enumerate(body.items)]
    engine = await ctx.models.reranker(body.model)
    with naming(RERANK_FIELDS):
        scores, _tokens = await engine.score(query, items)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if body.max_num_results is not None:
        order = order[:body.max_num_results]
    return RerankResponse(data=[RerankData(index=i, relevance_score=scores[i]) for i in order])
