"""Turns: create (streamed or whole), resume with client tool responses, get a turn or a step."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from generated.models.llama_stack_deprecated import CreateAgentTurnRequest, ResumeAgentTurnRequest
from ggstack.agents import loop, records
from ggstack.core.context import Context
from ggstack.http.errors import Conflict, InvalidRequest, NotFound
from ggstack.safety.check import conversation_of
from handlers.agents.setup import prepare


async def _answer(events: AsyncGenerator[dict[str, Any], None], stream: bool | None) -> dict[str, Any] | AsyncIterator:
    """The stream itself, or the turn from its last event (turn_complete or turn_awaiting_input)."""
    if stream:
        return events
    last: dict[str, Any] = {}
    async with aclosing(events):
        async for chunk in events:
            last = chunk
    return last["event"]["payload"]["turn"]


async def create_agent_turn(agent_id: str, session_id: str, body: CreateAgentTurnRequest,
                            ctx: Context) -> dict[str, Any] | AsyncIterator:
    agent = await records.get_agent(ctx.metadata, agent_id)
    session = await records.get_session(ctx.metadata, agent_id, session_id)
    request = body.model_dump(mode="json", exclude_none=True)
    for i, message in enumerate(request["messages"]):
        if message["role"] == "tool":
            # The schema allows it; it only answers a turn paused on a client tool (the house rule's 400).
            raise InvalidRequest(f"Invalid value: messages[{i}] is a tool response: answer a paused turn with "
                                 "resume", param=f"messages[{i}]")
    toolgroups, tool_config = request.get("toolgroups") or [], request.get("tool_config")
    setup = await prepare(ctx, agent, session, toolgroups=toolgroups, tool_config=tool_config,
                          documents=request.get("documents"))
    if setup.input_shields:
        conversation_of(request["messages"])  # what the guard cannot read (images) is a 400 before any event
    state = loop.new_turn(agent_id, session_id, request["messages"], toolgroups=toolgroups, tool_config=tool_config)
    return await _answer(loop.run(setup, state), body.stream)


async def resume_agent_turn(agent_id: str, session_id: str, turn_id: str, body: ResumeAgentTurnRequest,
                            ctx: Context) -> dict[str, Any] | AsyncIterator:
    agent = await records.get_agent(ctx.metadata, agent_id)
    session = await records.get_session(ctx.metadata, agent_id, session_id)
    responses = [r.model_dump(mode="json", exclude_none=True) for r in body.tool_responses]
    doc = await records.get_turn(ctx.metadata, agent_id, session_id, turn_id)
    if doc["status"] != records.AWAITING_INPUT:
        raise InvalidRequest(f"Turn '{turn_id}' is not waiting for tool responses", param="turn_id")
    pending = {c["call_id"]: c for c in doc["pending_calls"]}
    given = {r["call_id"] for r in responses}
    if given != set(pending) or len(given) != len(responses):
        raise InvalidRequest(f"tool_responses must answer each waiting call exactly once: "
                             f"{', '.join(sorted(pending))}", param="tool_responses")
    for response in responses:
        response["tool_name"] = pending[response["call_id"]]["tool_name"]
    setup = await prepare(ctx, agent, session, toolgroups=doc.get("toolgroups") or (),
                          tool_config=doc.get("tool_config") or None, resuming=turn_id)

    def claim(current: dict[str, Any]) -> dict[str, Any]:
        if current["status"] != records.AWAITING_INPUT:
            raise Conflict(f"Turn '{turn_id}' is already being resumed", param="turn_id")
        return {**current, "status": records.IN_PROGRESS}

    await ctx.metadata.update(records.TURN, turn_id, claim, parent=session_id)
    state = loop.TurnState(agent_id, session_id, doc)
    return await _answer(loop.run(setup, state, resumed_with=responses), body.stream)


async def get_agents_turn(agent_id: str, session_id: str, turn_id: str, ctx: Context) -> dict[str, Any]:
    return (await records.get_turn(ctx.metadata, agent_id, session_id, turn_id))["turn"]


async def get_agents_step(agent_id: str, session_id: str, turn_id: str, step_id: str,
                          ctx: Context) -> dict[str, Any]:
    turn = await get_agents_turn(agent_id, session_id, turn_id, ctx)
    for step in turn["steps"]:
        if step["step_id"] == step_id:
            return {"step": step}
    raise NotFound(f"Step '{step_id}' not found in turn '{turn_id}'", param="step_id")
