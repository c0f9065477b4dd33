"""Dell Pro AI Studio chat: the OpenAI-shaped chat completion and the Llama Stack–shaped one.

Not in the spec's words: sampling fields the client did not send keep llama.cpp's defaults
on the OpenAI route (not the schema's temperature 1 / top_p 1), as on Llama Stack's OpenAI
route; `logit_bias` is refused; `user` is accepted and ignored; completions are not stored
(Dell has no API to read them back). On the Llama Stack route, `X-LlamaStack-ProviderData`
is accepted and ignored, and without `sampling_params` decoding is greedy and unlimited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from generated.models.dell_pro_ai_studio import (
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    CreateChatCompletionRequest,
    CreateChatCompletionResponse,
)
from ggstack.core.context import Context
from ggstack.core.ids import new_id, now
from ggstack.http.errors import InvalidRequest, naming_stream
from ggstack.inference import dell, generation, legacy, options
from ggstack.inference.messages import openai_messages
from ggstack.inference.openai_format import OpenAIChatChunks, chat_completion, spec_dialect
from ggstack.inference.prompt import plan_chat
from ggstack.inference.tools import openai_tool_choice
from handlers.inference.chat import CHAT_FIELDS
from handlers.inference.legacy import CHAT_FIELDS as LEGACY_FIELDS
from handlers.inference.legacy import chat_engine

DIALECT = spec_dialect(CreateChatCompletionResponse, ChatCompletionChunkChoice)
#: Dell's response enum has no `auto`; a request that names a tier is served at the default one.
SERVICE_TIER = "default"


async def dell_create_chat_completion(body: CreateChatCompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await ctx.models.chat(body.model)
    request = body.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    if request.get("logit_bias"):
        raise InvalidRequest("logit_bias is not supported by the local engines", param="logit_bias")
    sampling = options.sampling_options(
        max_tokens=options.token_limit(("max_completion_tokens", request.get("max_completion_tokens")),
                                       ("max_tokens", request.get("max_tokens"))),
        temperature=request.get("temperature"), top_p=request.get("top_p"), stop=request.get("stop"),
        presence_penalty=request.get("presence_penalty"), frequency_penalty=request.get("frequency_penalty"),
        logprobs=options.top_logprobs_count(request.get("logprobs"), request.get("top_logprobs")))
    plan = plan_chat(engine, openai_messages(request["messages"]), sampling,
                     tool_choice=openai_tool_choice(request.get("tool_choice"), []))
    events = naming_stream(generation.generate_events(engine, [plan.prompt], plan.options, parser=plan.parser),
                           CHAT_FIELDS)
    completion_id, created, logprobs = new_id("chatcmpl-"), now(), bool(request.get("logprobs"))
    tier = SERVICE_TIER if "service_tier" in request else None
    if body.stream:
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks = OpenAIChatChunks(id=completion_id, created=created, model=body.model, logprobs=logprobs,
                                  include_usage=include_usage, dialect=DIALECT)
        return generation.shaped_stream(
            events, lambda event: [dell.openai_chunk(c, service_tier=tier) for c in chunks.chunks(event)])
    result = await generation.collect(events)
    return dell.openai_body(chat_completion(result, id=completion_id, created=created, model=body.model,
                                            logprobs=logprobs, dialect=DIALECT), service_tier=tier)


async def dell_llamastack_chat_completion(body: ChatCompletionRequest, ctx: Context,
                                          X_LlamaStack_ProviderData: str | None = None,
                                          ) -> dict | AsyncIterator[dict]:
    engine = await chat_engine(ctx, body.model_id)
    request = body.model_dump(mode="json", exclude_none=True)
    json_schema, grammar = legacy.response_format(request.get("response_format"))
    sampling = dell.dell_sampling(request.get("sampling_params")).options(
        logprobs=legacy.logprobs_count(request.get("logprobs")), json_schema=json_schema, grammar=grammar)
    plan = plan_chat(engine, dell.dell_messages(request["messages"]), sampling)
    events = naming_stream(generation.generate_events(engine, [plan.prompt], plan.options, parser=plan.parser),
                           LEGACY_FIELDS)
    logprobs = body.logprobs is not None
    if body.stream:
        return generation.shaped_stream(events, dell.DellChatChunks(logprobs=logprobs).chunks)
    return dell.chat_response(await generation.collect(events), logprobs=logprobs)
