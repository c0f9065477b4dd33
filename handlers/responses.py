"""The OpenAI-compatible Responses API: create (whole or streamed), get, delete, list, input items.

Not in the spec's words: `file_search` tools are run by the server before generating (the
user's last message is the query; results go into the system turn and come back as a
`file_search_call` item); web search and MCP tools are refused; a response cut short by
the context window has status `incomplete`; `max_infer_iters` and `include` are accepted
and change nothing (file search results are always included).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from generated.models.llama_stack_deprecated import (
    CreateOpenaiResponseRequest,
    OpenaiSearchVectorStoreRequest,
)
from ggstack.core.context import Context
from ggstack.core.errors import GrammarError
from ggstack.core.ids import new_id, now
from ggstack.http.errors import ApiError, Fields, naming_stream
from ggstack.http.render import error_body
from ggstack.inference import generation, options
from ggstack.inference.openai_responses import file_search, items, store
from ggstack.inference.openai_responses.output import ResponseBuilder
from ggstack.inference.prompt import plan_chat
from ggstack.stores.base import Order
from handlers.vector_stores.search import openai_search_vector_store

#: The output format is `text.format` here (chat completions call it `response_format`).
FIELDS: Fields = {GrammarError: "text.format", "response_format": "text.format", "json_schema": "text.format"}


async def create_openai_response(body: CreateOpenaiResponseRequest, ctx: Context) -> dict | AsyncIterator[dict]:
    ctx.models.get(body.model)  # an unknown model is 404 before anything else is judged
    request = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    new_items = items.input_items(request["input"])
    functions, searches = items.request_tools(request.get("tools"))
    text, schema = items.text_format(request.get("text"))
    sampling = options.sampling_options(temperature=body.temperature, top_p=body.top_p,
                                        max_tokens=body.max_output_tokens, json_schema=schema)
    engine = await ctx.models.chat(body.model)
    history = await store.conversation(ctx.metadata, body.previous_response_id) \
        if body.previous_response_id is not None else []

    async def run_search(store_id: str, search: OpenaiSearchVectorStoreRequest):
        return await openai_search_vector_store(store_id, search, ctx)

    async def count_tokens(value: str) -> int:
        return len(await engine.tokenize(value, add_bos=False, special=False))

    query = items.last_user_text(new_items)
    calls = [await file_search.search(tool, query, run_search) for tool in searches] if query else []
    found = await file_search.context_text(calls, context_length=engine.context_length, count_tokens=count_tokens)
    system = "\n\n".join(part for part in (body.instructions, found) if part)
    conversation = [*history, *new_items]
    plan = plan_chat(engine, items.conversation_messages(conversation, system=system), sampling, tools=functions)
    events = naming_stream(generation.generate_events(engine, [plan.prompt], plan.options, parser=plan.parser,
                                                      parallel_tool_calls=plan.parallel_tool_calls), FIELDS)

    head: dict[str, Any] = {"id": new_id("resp_"), "created_at": now(), "model": body.model,
                            "parallel_tool_calls": plan.parallel_tool_calls, "text": text}
    if body.temperature is not None:
        head["temperature"] = body.temperature
    if body.top_p is not None:
        head["top_p"] = body.top_p
    if body.previous_response_id is not None:
        head["previous_response_id"] = body.previous_response_id
    builder = ResponseBuilder(head, prelude=calls)

    async def keep(_: generation.Generation) -> None:
        if body.store is not False:
            await store.store_response(ctx.metadata, builder.response(), conversation)

    stream = generation.shaped_stream(events, builder.events, keep)
    if body.stream:
        return opened_stream(builder, stream)
    async with aclosing(stream):
        async for _ in stream:
            pass
    return builder.response()


async def opened_stream(builder: ResponseBuilder, stream: AsyncGenerator[dict, None]) -> AsyncGenerator[dict, None]:
    """created and in_progress first, before the prompt is processed (clients show the response
    at once); a request error after that point ends the stream with response.failed."""
    for event in builder.opening():
        yield event
    async with aclosing(stream):
        try:
            async for event in stream:
                yield event
        except ApiError as error:
            # the detail the error would have had as a status (it names the field at fault)
            yield builder.failed(error.code or error.type, error_body(error, "llama_stack")["detail"])


async def get_openai_response(response_id: str, ctx: Context) -> dict:
    return store.without_input(await store.response_doc(ctx.metadata, response_id))


async def delete_openai_response(response_id: str, ctx: Context) -> dict:
    return await store.delete_response(ctx.metadata, response_id)


async def list_openai_responses(ctx: Context, after: str | None = None, limit: int = store.DEFAULT_LIMIT,
                                model: str | None = None, order: Order = "desc") -> dict:
    return await store.list_responses(ctx.metadata, after=after or None, limit=limit, model=model or None,
                                       order=order)


async def list_openai_response_input_items(response_id: str, ctx: Context, after: str | None = None,
                                           before: str | None = None, include: list[str] | None = None,
                                           limit: int = store.DEFAULT_ITEMS_LIMIT, order: Order = "desc") -> dict:
    doc = await store.response_doc(ctx.metadata, response_id)
    data = store.page_items(doc["input"], after=after or None, before=before or None, limit=limit,
                             order=order)
    return {"object": "list", "data": data}
