"""Tool groups and the one way every tool is run.

Groups: `builtin::rag` always exists (it cannot be registered over or removed); others are
registered through the API and kept in the metadata store (kind `tool_group`), so they
survive a restart. A group's provider says what its tools are:

- `rag-runtime`: `knowledge_search` (see `rag`);
- `model-context-protocol`: whatever the MCP server at `mcp_endpoint` lists, asked each time;
- `brave-search`, `tavily-search` (`web_search`) and `wolfram-alpha` (`wolfram_alpha`): these
  need the internet, which this server does not use. They can be registered (configs carry
  them) and listed; invoking one is a clear 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import AlreadyExistsError, InvalidValueError, NotFoundError, UnknownIdError
from ggstack.stores.base import MetadataStore
from ggstack.tools import mcp, rag
from ggstack.tools.definitions import ToolDefinition

GROUP_KIND = "tool_group"
MCP_PROVIDER = "model-context-protocol"

_query = {"type": "object", "properties": {"query": {"type": "string", "description": "The query to search for"}},
          "required": ["query"]}
#: Providers whose tools need the internet: listed, never run here.
OFFLINE_ONLY = {
    "brave-search": ToolDefinition("web_search", "Search the web for information", _query),
    "tavily-search": ToolDefinition("web_search", "Search the web for information", _query),
    "wolfram-alpha": ToolDefinition("wolfram_alpha", "Query WolframAlpha for computation and knowledge", _query),
}
PROVIDERS = (rag.PROVIDER_ID, MCP_PROVIDER, *OFFLINE_ONLY)
BUILTIN_GROUPS = {rag.GROUP_ID: {"identifier": rag.GROUP_ID, "provider_resource_id": rag.GROUP_ID,
                                 "provider_id": rag.PROVIDER_ID, "type": "tool_group"}}


@dataclass
class ToolRuntime:
    """The groups of one server; `search` is the vector-store search operation and `write_query`
    a short chat generation (both for RAG)."""

    metadata: MetadataStore
    search: rag.Search
    write_query: rag.WriteQuery | None = None

    # -- groups --------------------------------------------------------------------------------

    async def groups(self) -> list[dict[str, Any]]:
        page = await self.metadata.list(GROUP_KIND, limit=None, order="asc")
        return [*BUILTIN_GROUPS.values(), *page.items]

    async def group(self, toolgroup_id: str) -> dict[str, Any]:
        found = BUILTIN_GROUPS.get(toolgroup_id) or await self.metadata.get(GROUP_KIND, toolgroup_id)
        if found is None:
            raise NotFoundError(f"Tool group '{toolgroup_id}' not found", kind=GROUP_KIND, identifier=toolgroup_id)
        return found

    async def register(self, toolgroup_id: str, provider_id: str, mcp_endpoint: Mapping[str, Any] | None = None,
                       args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if toolgroup_id in BUILTIN_GROUPS:
            raise AlreadyExistsError(f"Tool group '{toolgroup_id}' is built in and cannot be registered over")
        if provider_id not in PROVIDERS:
            raise UnknownIdError(f"provider_id {provider_id!r} is not one of {', '.join(PROVIDERS)}",
                                 field="provider_id")
        if provider_id == rag.PROVIDER_ID:
            raise UnknownIdError(f"the rag-runtime provider's only group is {rag.GROUP_ID}", field="provider_id")
        doc: dict[str, Any] = {"identifier": toolgroup_id, "provider_resource_id": toolgroup_id,
                               "provider_id": provider_id, "type": "tool_group"}
        if provider_id == MCP_PROVIDER:
            if not mcp_endpoint or not mcp_endpoint.get("uri"):
                raise InvalidValueError("an MCP tool group needs mcp_endpoint.uri", field="mcp_endpoint")
            doc["mcp_endpoint"] = {"uri": mcp.check_endpoint(mcp_endpoint["uri"])}
        elif mcp_endpoint:
            raise InvalidValueError(f"mcp_endpoint is only for the {MCP_PROVIDER} provider", field="mcp_endpoint")
        if args:
            doc["args"] = dict(args)
        await self.metadata.put(GROUP_KIND, toolgroup_id, doc)
        return doc

    async def unregister(self, toolgroup_id: str) -> None:
        if toolgroup_id in BUILTIN_GROUPS:
            raise InvalidValueError(f"Tool group '{toolgroup_id}' is built in and cannot be unregistered",
                                    field="toolgroup_id")
        if not await self.metadata.delete(GROUP_KIND, toolgroup_id):
            raise NotFoundError(f"Tool group '{toolgroup_id}' not found", kind=GROUP_KIND, identifier=toolgroup_id)

    # -- tools ---------------------------------------------------------------------------------

    async def group_tools(self, group: Mapping[str, Any]) -> list[ToolDefinition]:
        provider = group["provider_id"]
        if provider == rag.PROVIDER_ID:
            return [rag.KNOWLEDGE_SEARCH_TOOL]
        if provider == MCP_PROVIDER:
            return await mcp.list_tools(group["mcp_endpoint"]["uri"], group["identifier"])
        tool = OFFLINE_ONLY[provider]
        return [ToolDefinition(tool.name, tool.description, tool.schema, toolgroup_id=group["identifier"])]

    async def tools(self, toolgroup_id: str | None = None) -> list[ToolDefinition]:
        groups = [await self.group(toolgroup_id)] if toolgroup_id else await self.groups()
        found: list[ToolDefinition] = []
        for group in groups:
            if toolgroup_id is None and group["provider_id"] == MCP_PROVIDER:
                # Listing every tool should not fail because one remote server is down.
                try:
                    found += await self.group_tools(group)
                except InvalidValueError:
                    continue
            else:
                found += await self.group_tools(group)
        return found

    async def tool(self, tool_name: str) -> ToolDefinition:
        for tool in await self.tools():
            if tool.name == tool_name:
                return tool
        raise NotFoundError(f"Tool '{tool_name}' not found", kind="tool", identifier=tool_name)

    async def invoke(self, tool: ToolDefinition, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """A `ToolInvocationResult` ({content, error_message?, metadata?})."""
        group = await self.group(tool.toolgroup_id or "")
        provider = group["provider_id"]
        if provider == rag.PROVIDER_ID:
            args = dict(kwargs)
            query = args.get("query")
            if not isinstance(query, str):
                raise InvalidValueError("knowledge_search needs a query string", field="kwargs.query")
            config = rag.QueryConfig.from_request(args.get("query_config"), "kwargs.query_config")
            return await rag.query(query, rag.vector_db_ids_of(args, "kwargs.vector_db_ids"), config, self.search,
                                   self.write_query)
        if provider == MCP_PROVIDER:
            return await mcp.call_tool(group["mcp_endpoint"]["uri"], tool.name, kwargs)
        raise InvalidValueError(f"Tool '{tool.name}' ({provider}) needs the internet, which this server does not use",
                                field="tool_name")

    async def invoke_by_name(self, tool_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return await self.invoke(await self.tool(tool_name), kwargs)

    async def rag_query(self, content: str, vector_db_ids: list[str], config: Mapping[str, Any] | None,
                        ) -> dict[str, Any]:
        return await rag.query(content, vector_db_ids, rag.QueryConfig.from_request(config), self.search,
                               self.write_query)
