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
from ggstack.core.ids import new_id, now
from ggstack.http.errors import Fields, naming_stream
from ggstack.inference import generation, options, stored_chat
from ggstack.inference.messages import openai_messages
from ggstack.inference.openai_format import OPENAI, OpenAIChatChunks, chat_completion, spec_dialect
from ggstack.inference.prompt import plan_chat
from ggstack.inference.tools import openai_tool_choice, openai_tools
from ggstack.stores.base import Order

DIALECT = spec_dialect(OpenAIChatCompletion, OpenAIChunkChoice)
#: A chat's prompt is its `messages`; a schema the engine cannot use is its `response_format`.
CHAT_FIELDS: Fields = {ContextOverflowError: "messages", GrammarError: "response_format"}


async def openai_chat_completion(body: OpenaiChatCompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await ctx.models.chat(body.model)
    messages = [m.model_dump(mode="json", by_alias=True, exclude_none=True) for m in body.messages]
    tools = openai_tools(body.tools, body.functions)
    tool_choice = openai_tool_choice(body.tool_choice, tools, function_call=body.function_call)
    response_format = body.response_format.model_dump(by_alias=True, exclude_none=True) \
        if body.response_format else None
    sampling = options.sampling_options(
        max_tokens=options.token_limit(("max_completion_tokens", body.max_completion_tokens),
                                       ("max_tokens", body.max_tokens)),
        temperature=body.temperature, top_p=body.top_p, seed=body.seed, stop=body.stop,
        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
        logprobs=options.top_logprobs_count(body.logprobs, body.top_logprobs),
        json_schema=options.response_format_schema(response_format), logit_bias=body.logit_bias)
    plan = plan_chat(engine, openai_messages(messages), sampling, tools=tools, tool_choice=tool_choice,
                     parallel_tool_calls=body.parallel_tool_calls is not False)
    events = naming_stream(generation.generate_events(
        engine, [plan.prompt], plan.options, n=options.choice_count(body.n), parser=plan.parser,
        parallel_tool_calls=plan.parallel_tool_calls), CHAT_FIELDS)
    completion_id, created, logprobs = new_id("chatcmpl-"), now(), bool(body.logprobs)

    async def keep(result: generation.Generation) -> dict[str, Any]:
        full = chat_completion(result, id=completion_id, created=created, model=body.model, logprobs=logprobs,
                               dialect=OPENAI)
        if body.store is not False:
            await stored_chat.store_chat_completion(ctx.metadata, full, messages, retention_days=retention(ctx))
        return full

    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        chunks = OpenAIChatChunks(id=completion_id, created=created, model=body.model, logprobs=logprobs,
                                  include_usage=include_usage, dialect=DIALECT)
        return generation.shaped_stream(events, chunks.chunks, keep)
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
