"""An agent's config (plus a turn's overrides) made into a `TurnSetup`, checked before any event is sent.

Tool groups are named as `group` (all its tools) or `group/tool` (one), with `args` that are
bound to every call of those tools (`vector_db_ids` for `builtin::rag`). A turn's documents go
into the session's own vector store, which `knowledge_search` then searches too (the agent
gets `knowledge_search` for that turn if it did not have it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from ggstack.agents import records
from ggstack.agents.history import session_messages
from ggstack.agents.loop import BoundTool, TurnSetup
from ggstack.core.context import Context
from ggstack.core.errors import NotFoundError
from ggstack.http.errors import InvalidRequest
from ggstack.inference.legacy import Sampling, response_format
from ggstack.inference.tools import ToolChoice, check_tool_choice
from ggstack.safety import check_messages
from ggstack.tools import rag
from ggstack.tools.definitions import from_tool_def
from ggstack.tools.runtime import ToolRuntime
from handlers.shields import registry
from handlers.tool_runtime import tool_runtime
from handlers.vector_stores.documents import insert_documents, new_store


async def check_shields(ctx: Context, config: Mapping[str, Any]) -> None:
    """Every named shield must be registered (at creation, and again before a turn: it may have been
    unregistered since); an unknown one is 'Invalid value' naming it, never skipped."""
    shields = registry(ctx)
    for key in ("input_shields", "output_shields"):
        for i, name in enumerate(config.get(key) or ()):
            await shields.for_use(name, field=f"agent_config.{key}[{i}]")


def split_name(entry: Any) -> tuple[str, str | None, dict[str, Any]]:
    """An `AgentTool` -> (group id, tool name or None, args)."""
    name, args = (entry, {}) if isinstance(entry, str) else (entry["name"], dict(entry.get("args") or {}))
    group, _, tool = name.partition("/")
    return group, tool or None, args


async def check_config(ctx: Context, config: Mapping[str, Any]) -> None:
    """What can be judged at creation: the model, shields, iterations, tool group names."""
    ctx.models.get(config["model"])
    await check_shields(ctx, config)
    if (config.get("max_infer_iters") or 1) < 1:
        raise InvalidRequest("agent_config.max_infer_iters must be at least 1", param="agent_config.max_infer_iters")
    runtime = tool_runtime(ctx)
    for i, entry in enumerate(config.get("toolgroups") or ()):
        group, _, _ = split_name(entry)
        try:
            await runtime.group(group)
        except NotFoundError:
            raise InvalidRequest(f"Invalid value: agent_config.toolgroups[{i}] names tool group {group!r}, which "
                                 "is not registered", param=f"agent_config.toolgroups[{i}]") from None


def tool_choice_of(config: Mapping[str, Any], tool_config: Mapping[str, Any] | None) -> ToolChoice:
    chosen = (tool_config or config.get("tool_config") or {}).get("tool_choice") or config.get("tool_choice")
    return ToolChoice.of(chosen or "auto")


async def bound_tools(runtime: ToolRuntime, entries: Sequence[Any], client_tools: Sequence[Mapping[str, Any]],
                      session_store: str | None) -> dict[str, BoundTool]:
    tools: dict[str, BoundTool] = {}
    for i, entry in enumerate(entries):
        group_id, only, args = split_name(entry)
        try:
            group = await runtime.group(group_id)
        except NotFoundError:
            raise InvalidRequest(f"Invalid value: toolgroups[{i}] names tool group {group_id!r}, which is not "
                                 "registered", param=f"toolgroups[{i}]") from None
        found = [t for t in await runtime.group_tools(group) if only is None or t.name == only]
        if not found:
            raise InvalidRequest(f"Invalid value: tool group {group_id!r} has no tool {only!r}",
                                 param=f"toolgroups[{i}]")
        if group["provider_id"] == rag.PROVIDER_ID:
            ids = list(args.get("vector_db_ids") or [])
            args = {**args, "vector_db_ids": ids + ([session_store] if session_store else [])}
            if not args["vector_db_ids"]:
                raise InvalidRequest(f"toolgroups[{i}]: {rag.GROUP_ID} needs args.vector_db_ids (or documents "
                                     "attached to the turn)", param=f"toolgroups[{i}].args")
        for tool in found:
            tools[tool.name] = BoundTool(tool, {**dict(group.get("args") or {}), **args})
    if session_store and rag.KNOWLEDGE_SEARCH not in tools:
        tools[rag.KNOWLEDGE_SEARCH] = BoundTool(rag.KNOWLEDGE_SEARCH_TOOL, {"vector_db_ids": [session_store]})
    for client_tool in client_tools:
        if client_tool["name"] in tools:
            raise InvalidRequest(f"client tool {client_tool['name']!r} has the name of a server tool",
                                 param="agent_config.client_tools")
        tools[client_tool["name"]] = BoundTool(from_tool_def(client_tool), client=True)
    return tools


async def session_store(ctx: Context, agent_id: str, session: dict[str, Any],
                        documents: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The session's vector store (made on its first documents), with `documents` indexed into it."""
    store_id = session.get("vector_store_id")
    if documents:
        if store_id is None:
            store_id = await new_store(ctx, f"session-{session['session_id']}")
            session["vector_store_id"] = store_id
            await ctx.metadata.put(records.SESSION, session["session_id"], session, parent=agent_id)
        await insert_documents(ctx, store_id, documents)
    return store_id


async def prepare(ctx: Context, agent: Mapping[str, Any], session: dict[str, Any], *,
                  toolgroups: Sequence[Any] = (), tool_config: Mapping[str, Any] | None = None,
                  documents: Sequence[Mapping[str, Any]] | None = None, resuming: str | None = None) -> TurnSetup:
    """`resuming`: the id of the paused turn being continued (its own steps are not history)."""
    config = agent["agent_config"]
    await check_shields(ctx, config)
    engine = await ctx.models.chat(config["model"])
    schema, grammar = response_format(config.get("response_format"))
    options = Sampling.from_legacy(config.get("sampling_params")).options(json_schema=schema, grammar=grammar)
    runtime = tool_runtime(ctx)
    store = await session_store(ctx, agent["agent_id"], session, documents)
    tools = await bound_tools(runtime, [*(config.get("toolgroups") or ()), *toolgroups],
                              config.get("client_tools") or (), store)
    choice = tool_choice_of(config, tool_config)
    check_tool_choice(choice, [t.definition.spec() for t in tools.values()], param="tool_config.tool_choice")
    turns = await records.session_turns(ctx.metadata, session["session_id"])
    history = session_messages(config.get("instructions") or "",
                               [t for t in turns if t["turn"]["turn_id"] != resuming])
    return TurnSetup(engine=engine, options=options, tools=tools, tool_choice=choice,
                     max_infer_iters=config.get("max_infer_iters") or 10, runtime=runtime, metadata=ctx.metadata,
                     history=history, input_shields=tuple(config.get("input_shields") or ()),
                     output_shields=tuple(config.get("output_shields") or ()),
                     shield=partial(check_messages, registry(ctx), ctx.models))
