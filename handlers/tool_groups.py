"""Tool groups and tools (stable document). `builtin::rag` is always there; registered groups
are kept in the metadata store. A tool's listing answers in Llama Stack's `Tool` shape."""

from __future__ import annotations

from typing import Any

from ggstack.core.context import Context
from ggstack.tools.definitions import ToolDefinition
from ggstack.tools.runtime import ToolRuntime
from handlers.tool_runtime import tool_runtime


async def _tool(runtime: ToolRuntime, tool: ToolDefinition) -> dict[str, Any]:
    group = await runtime.group(tool.toolgroup_id or "")
    body: dict[str, Any] = {"identifier": tool.name, "provider_resource_id": tool.name,
                            "provider_id": group["provider_id"], "type": "tool", "toolgroup_id": group["identifier"],
                            "description": tool.description, "parameters": tool.parameters()}
    if tool.metadata:
        body["metadata"] = dict(tool.metadata)
    return body


async def list_tool_groups(ctx: Context) -> dict[str, Any]:
    return {"data": await tool_runtime(ctx).groups()}


async def register_tool_group(body: Any, ctx: Context) -> None:
    request = body.model_dump(mode="json", exclude_none=True)
    await tool_runtime(ctx).register(request["toolgroup_id"], request["provider_id"], request.get("mcp_endpoint"),
                                     request.get("args"))


async def get_tool_group(toolgroup_id: str, ctx: Context) -> dict[str, Any]:
    return await tool_runtime(ctx).group(toolgroup_id)


async def unregister_toolgroup(toolgroup_id: str, ctx: Context) -> None:
    await tool_runtime(ctx).unregister(toolgroup_id)


async def list_tools(ctx: Context, toolgroup_id: str | None = None) -> dict[str, Any]:
    runtime = tool_runtime(ctx)
    return {"data": [await _tool(runtime, t) for t in await runtime.tools(toolgroup_id or None)]}


async def get_tool(tool_name: str, ctx: Context) -> dict[str, Any]:
    runtime = tool_runtime(ctx)
    return await _tool(runtime, await runtime.tool(tool_name))
