"""The tool runtime (stable document): list a group's tool definitions, invoke a tool, and the RAG
tool's insert and query. Every tool kind goes through `ggstack.tools.runtime.ToolRuntime`."""

from __future__ import annotations

from typing import Any

from ggstack.core.context import Context
from ggstack.inference.generation import generate
from ggstack.inference.legacy import content_text
from ggstack.inference.messages import Message
from ggstack.inference.options import sampling_options
from ggstack.inference.prompt import plan_chat
from ggstack.tools import mcp, rag
from ggstack.tools.definitions import ToolDefinition
from ggstack.tools.runtime import ToolRuntime
from handlers.vector_stores import openai_search_vector_store
from handlers.vector_stores.common import active_store
from handlers.vector_stores.documents import insert_documents


def tool_runtime(ctx: Context) -> ToolRuntime:
    """The runtime over this server's stores: RAG searches are the vector-store search operation."""
    async def search(store_id: str, request: Any):
        return await openai_search_vector_store(store_id, request, ctx)

    async def write_query(model: str, prompt: str) -> str:
        engine = await ctx.models.chat(model)
        plan = plan_chat(engine, [Message("user", prompt)],
                         sampling_options(temperature=0.0, max_tokens=rag.QUERY_TOKENS))
        return (await generate(engine, [plan.prompt], plan.options)).choices[0].text

    return ToolRuntime(ctx.metadata, search, write_query)


def tool_def(tool: ToolDefinition) -> dict[str, Any]:
    """A `ToolDef`."""
    body: dict[str, Any] = {"name": tool.name, "description": tool.description, "parameters": tool.parameters()}
    if tool.metadata:
        body["metadata"] = dict(tool.metadata)
    return body


async def list_runtime_tools(ctx: Context, tool_group_id: str | None = None,
                             mcp_endpoint: Any = None) -> dict[str, Any]:
    uri = mcp_endpoint.get("uri") if isinstance(mcp_endpoint, dict) else getattr(mcp_endpoint, "uri", mcp_endpoint)
    if uri:
        tools = await mcp.list_tools(mcp.check_endpoint(uri, "mcp_endpoint"), tool_group_id or "")
    else:
        tools = await tool_runtime(ctx).tools(tool_group_id or None)
    return {"data": [tool_def(t) for t in tools]}


async def invoke_tool(body: Any, ctx: Context) -> dict[str, Any]:
    return await tool_runtime(ctx).invoke_by_name(body.tool_name, body.kwargs)


async def rag_tool_insert(body: Any, ctx: Context) -> None:
    request = body.model_dump(mode="json", exclude_none=True)  # chunk size bounded by the (overlaid) spec
    await insert_documents(ctx, request["vector_db_id"], request["documents"],
                           chunk_size_tokens=request["chunk_size_in_tokens"])


async def rag_tool_query(body: Any, ctx: Context) -> dict[str, Any]:
    request = body.model_dump(mode="json", exclude_none=True)
    for store_id in request["vector_db_ids"]:
        await active_store(ctx, store_id)  # an unknown store is the first thing wrong
    generator = (request.get("query_config") or {}).get("query_generator_config") or {}
    parts = request["content"] if isinstance(request["content"], list) else [request["content"]]
    # the default generator's query is the content's parts joined by its separator
    content = generator.get("separator", " ").join(content_text(p, param="content") for p in parts)
    return await tool_runtime(ctx).rag_query(content, request["vector_db_ids"], request.get("query_config"))
