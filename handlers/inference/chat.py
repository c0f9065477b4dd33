"""OpenAI chat completions (whole and streamed) and the stored chat completions.

Not in the spec's words: every completion, streamed or not, is stored with its input
messages before the answer ends (unless `store: false`; kept only for `chat_completions_retention_days`,
see ggstack.inference.stored_chat); `logit_bias` works on llama.cpp models (ctransformers: 501);
`user` is accepted and ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenAIChatCompletion,
    OpenaiChatCompletionRequest,
    OpenAIChunkChoice,
)
from ggstack.core.context import Context
from ggstack.core.errors import ContextOverflowError, GrammarError
from ggstack.http.errors import Fields, naming_stream
from ggstack.inference import generation, stored_chat
from ggstack.inference.openai_chat import start_openai_chat
from ggstack.inference.openai_format import OPENAI, chat_completion, spec_dialect
from ggstack.inference.tools import openai_tools
from ggstack.stores.base import Order

DIALECT = spec_dialect(OpenAIChatCompletion, OpenAIChunkChoice)
#: A chat's prompt is its `messages`; a schema the engine cannot use is its `response_format`.
CHAT_FIELDS: Fields = {ContextOverflowError: "messages", GrammarError: "response_format"}


async def openai_chat_completion(body: OpenaiChatCompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await ctx.models.chat(body.model)
    request = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    chat = start_openai_chat(engine, request, tools=openai_tools(request.get("tools"), request.get("functions")))
    events = naming_stream(chat.events, CHAT_FIELDS)

    async def keep(result: generation.Generation) -> dict[str, Any]:
        full = chat_completion(result, id=chat.id, created=chat.created, model=body.model, logprobs=chat.logprobs,
                               dialect=OPENAI)
        if body.store is not False:
            await stored_chat.store_chat_completion(ctx.metadata, full, request["messages"],
                                                    retention_days=retention(ctx))
        return full

    if body.stream:
        return generation.shaped_stream(events, chat.chunk_shaper(DIALECT).chunks, keep)
    result = await generation.collect(events)
    return stored_chat.in_dialect(await keep(result), DIALECT)


async def list_chat_completions(ctx: Context, after: str | None = None, limit: int = stored_chat.DEFAULT_LIMIT,
                                model: str | None = None, order: Order = "desc") -> dict:
    return await stored_chat.list_chat_completions(ctx.metadata, DIALECT, after=after, limit=limit, model=model,
                                                   order=order, retention_days=retention(ctx))


async def get_chat_completion(completion_id: str, ctx: Context) -> dict:
    return await stored_chat.get_chat_completion(ctx.metadata, completion_id, DIALECT, retention_days=retention(ctx))


async def delete_chat_completion(completion_id: str, ctx: Context) -> dict:
    return await stored_chat.delete_chat_completion(ctx.metadata, completion_id, retention_days=retention(ctx))


def retention(ctx: Context) -> float | None:
    return ctx.settings.chat_completions_retention_days
