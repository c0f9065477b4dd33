"""The legacy Llama Stack inference API: text completion and chat completion, whole and streamed.

Not in the spec's words: without `sampling_params` decoding is greedy and unlimited (until
EOS or the context ends), as Llama Stack's default; `completion` feeds the content to the
model as raw text (no chat template); `tool_prompt_format` and `system_message_behavior` are
accepted and ignored (the model's own template, or Hermes-style tool instructions, decide
the format); a tool call ends the message with `end_of_message`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from functools import partial
from typing import Any

from generated.models.llama_stack_inference import ChatCompletionRequest, CompletionRequest
from ggstack.core.context import Context
from ggstack.core.errors import ContextOverflowError, NotFoundError
from ggstack.engines.base import ChatEngine
from ggstack.http.errors import Fields, naming, naming_stream
from ggstack.inference import generation, legacy
from ggstack.inference.generation import Event

#: The legacy family names its model `model_id`; a chat's prompt is its `messages`.
CHAT_FIELDS: Fields = {NotFoundError: "model_id", "model": "model_id", ContextOverflowError: "messages"}
COMPLETION_FIELDS: Fields = {**CHAT_FIELDS, ContextOverflowError: "content"}


async def chat_engine(ctx: Context, model_id: str) -> ChatEngine:
    with naming(CHAT_FIELDS):
        return await ctx.models.chat(model_id)


async def completion(body: CompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await chat_engine(ctx, body.model_id)
    request = body.model_dump(mode="json", exclude_none=True)
    prompt = legacy.content_text(request["content"], param="content")
    json_schema, grammar = legacy.response_format(request.get("response_format"))
    sampling = legacy.Sampling.from_legacy(request.get("sampling_params")).options(
        logprobs=legacy.logprobs_count(request.get("logprobs")), json_schema=json_schema, grammar=grammar)
    events = naming_stream(generation.generate_events(engine, [prompt], sampling), COMPLETION_FIELDS)
    logprobs = body.logprobs is not None
    return await answer(events, body.stream, legacy.LegacyCompletionChunks(logprobs=logprobs).chunks,
                        partial(legacy.completion_response, logprobs=logprobs))


async def chat_completion(body: ChatCompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await chat_engine(ctx, body.model_id)
    request = body.model_dump(mode="json", exclude_none=True)
    tools = legacy.legacy_tools(request.get("tools"))
    config = body.tool_config
    tool_choice = legacy.legacy_tool_choice(
        config.tool_choice if config is not None and "tool_choice" in config.model_fields_set else None,
        body.tool_choice if "tool_choice" in body.model_fields_set else None, tools)
    events = naming_stream(legacy.chat_events(engine, request, tools=tools, tool_choice=tool_choice), CHAT_FIELDS)
    logprobs = body.logprobs is not None
    return await answer(events, body.stream, legacy.LegacyChatChunks(logprobs=logprobs).chunks,
                        partial(legacy.chat_response, logprobs=logprobs))


async def answer(events: AsyncGenerator[Event, None], stream: bool | None,
                 chunks: Callable[[Event], list[dict[str, Any]]],
                 whole: Callable[[generation.Generation], dict[str, Any]]) -> dict | AsyncIterator[dict]:
    """The legacy families' answer: the events shaped into chunks, or the whole response."""
    if stream:
        return generation.shaped_stream(events, chunks)
    return whole(await generation.collect(events))
