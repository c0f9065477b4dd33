"""Agents and their sessions: create, get, list, delete."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_deprecated import CreateAgentRequest, CreateAgentSessionRequest
from ggstack.agents import records
from ggstack.core import ids
from ggstack.core.context import Context
from handlers.agents.setup import check_config


def public_session(session: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any]:
    return {"session_id": session["session_id"], "session_name": session["session_name"],
            "turns": [t["turn"] for t in turns], "started_at": session["started_at"]}


async def create_agent(body: CreateAgentRequest, ctx: Context) -> dict[str, Any]:
    config = body.agent_config.model_dump(mode="json", exclude_none=True)
    await check_config(ctx, config)
    agent: dict[str, Any] = {"agent_id": ids.new_uuid(), "agent_config": config, "created_at": ids.now_iso()}
    await ctx.metadata.put(records.AGENT, agent["agent_id"], agent)
    return {"agent_id": agent["agent_id"]}


async def get_agent(agent_id: str, ctx: Context) -> dict[str, Any]:
    return await records.get_agent(ctx.metadata, agent_id)


async def list_agents(ctx: Context, start_index: int | None = None, limit: int | None = None) -> dict[str, Any]:
    return await records.page(ctx.metadata, records.AGENT, start_index, limit)


async def delete_agent(agent_id: str, ctx: Context) -> None:
    await records.get_agent(ctx.metadata, agent_id)
    await records.delete_agent(ctx.metadata, agent_id)


async def create_agent_session(agent_id: str, body: CreateAgentSessionRequest, ctx: Context) -> dict[str, Any]:
    await records.get_agent(ctx.metadata, agent_id)
    session = {"session_id": ids.new_uuid(), "session_name": body.session_name, "agent_id": agent_id,
               "started_at": ids.now_iso()}
    await ctx.metadata.put(records.SESSION, session["session_id"], session, parent=agent_id)
    return {"session_id": session["session_id"]}


async def get_agents_session(session_id: str, agent_id: str, ctx: Context,
                             turn_ids: list[str] | None = None) -> dict[str, Any]:
    session = await records.get_session(ctx.metadata, agent_id, session_id)
    turns = await records.session_turns(ctx.metadata, session_id)
    if turn_ids:
        turns = [t for t in turns if t["turn"]["turn_id"] in turn_ids]
    return public_session(session, turns)


async def delete_agents_session(session_id: str, agent_id: str, ctx: Context) -> None:
    await records.get_session(ctx.metadata, agent_id, session_id)
    await records.delete_session(ctx.metadata, agent_id, session_id)


async def list_agent_sessions(agent_id: str, ctx: Context, start_index: int | None = None,
                              limit: int | None = None) -> dict[str, Any]:
    await records.get_agent(ctx.metadata, agent_id)
    result = await records.page(ctx.metadata, records.SESSION, start_index, limit, parent=agent_id)
    result["data"] = [public_session(s, await records.session_turns(ctx.metadata, s["session_id"]))
                      for s in result["data"]]
    return result
