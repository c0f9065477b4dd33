"""Dell Pro AI Studio chat: the OpenAI-shaped chat completion and the Llama Stack–shaped one.

Not in the spec's words: sampling fields the client did not send keep llama.cpp's defaults
on the OpenAI route (not the schema's temperature 1 / top_p 1), as on Llama Stack's OpenAI
route; `logit_bias` is refused; `user` is accepted and ignored; completions are not stored
(Dell has no API to read them back). On the Llama Stack route, `X-LlamaStack-ProviderData`
is accepted and ignored, and without `sampling_params` decoding is greedy and unlimited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from generated.models.dell_pro_ai_studio import (
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    CreateChatCompletionRequest,
    CreateChatCompletionResponse,
)
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest, naming_stream
from ggstack.inference import dell, generation, legacy
from ggstack.inference.openai_chat import start_openai_chat
from ggstack.inference.openai_format import chat_completion, spec_dialect
from handlers.inference.chat import CHAT_FIELDS
from handlers.inference.legacy import CHAT_FIELDS as LEGACY_FIELDS
from handlers.inference.legacy import answer, chat_engine

DIALECT = spec_dialect(CreateChatCompletionResponse, ChatCompletionChunkChoice)
#: Dell's response enum has no `auto`; a request that names a tier is served at the default one.
SERVICE_TIER = "default"


async def dell_create_chat_completion(body: CreateChatCompletionRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    engine = await ctx.models.chat(body.model)
    request = body.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    if request.get("logit_bias"):
        raise InvalidRequest("logit_bias is not supported by the local engines", param="logit_bias")
    chat = start_openai_chat(engine, request)
    events = naming_stream(chat.events, CHAT_FIELDS)
    tier = SERVICE_TIER if "service_tier" in request else None
    if body.stream:
        chunks = chat.chunk_shaper(DIALECT)
        return generation.shaped_stream(
            events, lambda event: [dell.openai_chunk(c, service_tier=tier) for c in chunks.chunks(event)])
    result = await generation.collect(events)
    return dell.openai_body(chat_completion(result, id=chat.id, created=chat.created, model=body.model,
                                            logprobs=chat.logprobs, dialect=DIALECT), service_tier=tier)


async def dell_llamastack_chat_completion(body: ChatCompletionRequest, ctx: Context,
                                          X_LlamaStack_ProviderData: str | None = None,
                                          ) -> dict | AsyncIterator[dict]:
    engine = await chat_engine(ctx, body.model_id)
    request = body.model_dump(mode="json", exclude_none=True)
    events = naming_stream(legacy.chat_events(engine, request, read_sampling=dell.dell_sampling,
                                              read_messages=dell.dell_messages), LEGACY_FIELDS)
    logprobs = body.logprobs is not None
    return await answer(events, body.stream, dell.DellChatChunks(logprobs=logprobs).chunks,
                        partial(dell.chat_response, logprobs=logprobs))
