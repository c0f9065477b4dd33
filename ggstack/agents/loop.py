"""One agent turn: inference, tools, inference ... as the spec's stream of events.

Order of events: `turn_start`; per step `step_start`, `step_progress` (text and tool-call
deltas of an inference), `step_complete`; then `turn_complete`, or `turn_awaiting_input`
when the model called a client tool. Server tools (built-in RAG, MCP) run here, between
inferences; a client tool pauses the turn, and `resume` continues it from the stored state
with the client's responses as a tool execution step.

Choices the spec leaves open, made as Llama Stack does where it says:
- `max_infer_iters` counts inferences in the turn (across resumes); when reached, the last
  message is the turn's answer with stop reason `end_of_turn`, even if it called tools.
- A forced `tool_choice` (`required` or a tool name) applies to the turn's first inference
  only; later ones are `auto`, so a forced call is followed by an answer, not by the same
  call until `max_infer_iters`.
- A tool that fails answers the model with the error text; the turn goes on.
- Input shields judge the turn's input messages before the first inference, output shields the
  final answer; each group is one `shield_call` step. The first violation ends the turn with the
  shield's `user_message` as the assistant's answer (a violated output replaces the answer).
  A resumed turn does not judge its input again.

The turn is stored when it completes or pauses. A turn the client abandons (disconnect
while streaming) or that fails is not stored: its span's outcome says so, and a paused turn
being resumed goes back to waiting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio

from ggstack.agents import records
from ggstack.agents.history import input_messages, step_messages
from ggstack.agents.spans import Span, turn_span
from ggstack.core import ids
from ggstack.core.errors import DomainError
from ggstack.engines.base import ChatEngine, SamplingOptions
from ggstack.http.errors import ApiError
from ggstack.inference.generation import ChoiceFinished, TextDelta, ToolCallDelta, generate_events
from ggstack.inference.legacy import stop_reason
from ggstack.inference.messages import Message
from ggstack.inference.prompt import plan_chat
from ggstack.inference.tools import ToolCall, ToolChoice
from ggstack.safety import Verdict
from ggstack.safety.check import conversation_of
from ggstack.stores.base import MetadataStore
from ggstack.tools.definitions import ToolDefinition
from ggstack.tools.runtime import ToolRuntime

Chunk = dict[str, Any]

#: Runs one shield (by id) over `(role, text)` turns: `ggstack.safety.check_messages`, bound.
ShieldCheck = Callable[[str, Sequence[tuple[str, str]]], Awaitable[Verdict]]


@dataclass(frozen=True)
class BoundTool:
    """A tool offered in a turn: `args` come from the toolgroup config and win over the model's;
    a client tool is run by the client (the turn pauses for it)."""

    definition: ToolDefinition
    args: Mapping[str, Any] = field(default_factory=dict)
    client: bool = False


@dataclass(frozen=True)
class TurnSetup:
    """Everything a turn needs, resolved (and checked) before its stream starts."""

    engine: ChatEngine
    options: SamplingOptions
    tools: Mapping[str, BoundTool]
    tool_choice: ToolChoice
    max_infer_iters: int
    runtime: ToolRuntime
    metadata: MetadataStore
    history: Sequence[Message]
    input_shields: Sequence[str] = ()
    output_shields: Sequence[str] = ()
    shield: ShieldCheck | None = None  # needed when the agent names shields


@dataclass
class TurnState:
    """The stored turn (`doc`) as the loop advances it."""

    agent_id: str
    session_id: str
    doc: dict[str, Any]

    @property
    def turn(self) -> dict[str, Any]:
        return self.doc["turn"]


def new_turn(agent_id: str, session_id: str, messages: list[dict[str, Any]], *,
             toolgroups: Sequence[Any] = (), tool_config: Mapping[str, Any] | None = None) -> TurnState:
    """A turn about to start; its own toolgroups and tool_config are kept for a resume."""
    turn = {"turn_id": ids.new_uuid(), "session_id": session_id, "input_messages": messages, "steps": [],
            "started_at": ids.now_iso()}
    return TurnState(agent_id, session_id, {"turn": turn, "status": records.IN_PROGRESS, "inferences": 0,
                                            "pending_calls": [], "toolgroups": list(toolgroups),
                                            "tool_config": dict(tool_config or {})})


def payload(body: dict[str, Any]) -> Chunk:
    return {"event": {"payload": body}}


# -- tool calls in the spec's shape ---------------------------------------------------------------


def _shallow(value: Any) -> bool:
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, scalar):
        return True
    if isinstance(value, list):
        return all(isinstance(v, scalar) for v in value)
    if isinstance(value, dict):
        return all(isinstance(v, scalar) for v in value.values())
    return False


def spec_call(call: ToolCall) -> dict[str, Any]:
    """A `ToolCall`; arguments nested deeper than the schema's object type stay JSON text."""
    arguments = call.arguments_object()
    shown: Any = arguments if all(_shallow(v) for v in arguments.values()) else call.arguments
    return {"call_id": call.id, "tool_name": call.name, "arguments": shown, "arguments_json": call.arguments}


def tool_response(call: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    content = result.get("content") or ""
    if result.get("error_message"):
        content = f"Error: {result['error_message']}"
    response = {"call_id": call["call_id"], "tool_name": call["tool_name"], "content": content}
    if result.get("metadata"):
        response["metadata"] = dict(result["metadata"])
    return response


# -- the loop -------------------------------------------------------------------------------------


async def run(setup: TurnSetup, state: TurnState, *, resumed_with: list[dict[str, Any]] | None = None,
              ) -> AsyncGenerator[Chunk, None]:
    """The turn's events. Storing happens here; closing the iterator abandons the turn."""
    span = turn_span(state.agent_id, state.session_id, state.turn["turn_id"])
    before = json.loads(json.dumps(state.doc)) if resumed_with is not None else None
    state.doc["status"] = records.IN_PROGRESS
    outcome = "cancelled"  # unless it ends or fails: the client went away
    try:
        yield payload({"event_type": "turn_start", "turn_id": state.turn["turn_id"]})
        if resumed_with is not None:
            calls = state.doc["pending_calls"]
            state.doc["pending_calls"] = []
            async for chunk in _tool_step(setup, state, span, calls, given=resumed_with):
                yield chunk
        refusal: dict[str, Any] = {}
        if resumed_with is None and setup.input_shields:
            conversation = conversation_of(state.turn["input_messages"])
            async for chunk in _shield_step(setup, state, span, setup.input_shields, conversation, refusal):
                yield chunk
        if refusal:
            yield await _finish(setup, state, refusal, records.COMPLETED)
        else:
            async for chunk in _inferences(setup, state, span):
                yield chunk
        outcome = "ok"
    except Exception:
        outcome = "error"
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if state.doc["status"] == records.IN_PROGRESS:  # not stored as finished or paused
                await _abandon(setup.metadata, state, before)
            else:
                outcome = "ok"  # stored; the client left after the last event
            await span.end(setup.metadata, outcome)


async def _abandon(metadata: MetadataStore, state: TurnState, before: dict[str, Any] | None) -> None:
    if before is None:
        await metadata.delete(records.TURN, state.turn["turn_id"], parent=state.session_id)
    else:
        await metadata.put(records.TURN, state.turn["turn_id"], before, parent=state.session_id)


async def _inferences(setup: TurnSetup, state: TurnState, span: Span) -> AsyncGenerator[Chunk, None]:
    while True:
        message: dict[str, Any] = {}
        async for chunk in _inference_step(setup, state, span, message):
            yield chunk
        state.doc["inferences"] += 1
        calls = message.get("tool_calls") or []
        if state.doc["inferences"] >= setup.max_infer_iters or not calls or message["stop_reason"] == "out_of_tokens":
            if calls and message["stop_reason"] != "out_of_tokens":
                message["stop_reason"] = "end_of_turn"  # no more inferences: this is the answer
            if setup.output_shields:
                refusal: dict[str, Any] = {}
                conversation = [*conversation_of(state.turn["input_messages"]), ("assistant", message["content"])]
                async for chunk in _shield_step(setup, state, span, setup.output_shields, conversation, refusal):
                    yield chunk
                message = refusal or message
            yield await _finish(setup, state, message, records.COMPLETED)
            return
        server = [c for c in calls if not setup.tools[c["tool_name"]].client]
        client = [c for c in calls if setup.tools[c["tool_name"]].client]
        if server:
            async for chunk in _tool_step(setup, state, span, server):
                yield chunk
        if client:
            state.doc["pending_calls"] = client
            yield await _finish(setup, state, {**message, "tool_calls": client}, records.AWAITING_INPUT)
            return


async def _finish(setup: TurnSetup, state: TurnState, message: dict[str, Any], status: str) -> Chunk:
    state.turn["output_message"] = message
    state.doc["status"] = status
    if status == records.COMPLETED:
        state.turn["completed_at"] = ids.now_iso()
    await setup.metadata.put(records.TURN, state.turn["turn_id"], state.doc, parent=state.session_id)
    event = "turn_complete" if status == records.COMPLETED else "turn_awaiting_input"
    return payload({"event_type": event, "turn": state.turn})


def _messages(setup: TurnSetup, state: TurnState) -> list[Message]:
    return [*setup.history, *input_messages(state.turn["input_messages"]), *step_messages(state.turn["steps"])]


def _step(state: TurnState, step_type: str) -> dict[str, Any]:
    return {"turn_id": state.turn["turn_id"], "step_id": ids.new_uuid(), "step_type": step_type,
            "started_at": ids.now_iso()}


async def _complete_step(setup: TurnSetup, state: TurnState, span: Span, step: dict[str, Any]) -> Chunk:
    step["completed_at"] = ids.now_iso()
    state.turn["steps"].append(step)
    await span.end(setup.metadata)
    return payload({"event_type": "step_complete", "step_type": step["step_type"], "step_id": step["step_id"],
                    "step_details": step})


async def _inference_step(setup: TurnSetup, state: TurnState, span: Span, message: dict[str, Any],
                          ) -> AsyncGenerator[Chunk, None]:
    step = _step(state, "inference")
    step_span = span.child("agents.step.inference", {"step_id": step["step_id"], "step_type": "inference"})
    yield payload({"event_type": "step_start", "step_type": "inference", "step_id": step["step_id"]})
    choice = setup.tool_choice
    if state.doc["inferences"] > 0 and choice.forced:
        choice = ToolChoice("auto")
    definitions = [tool.definition.spec() for tool in setup.tools.values()]
    plan = plan_chat(setup.engine, _messages(setup, state), setup.options, tools=definitions,
                     tool_choice=choice if definitions else ToolChoice("none"))
    text, calls, finish = "", [], "stop"
    events = generate_events(setup.engine, [plan.prompt], plan.options, parser=plan.parser,
                             parallel_tool_calls=plan.parallel_tool_calls)
    async with aclosing(events):
        async for event in events:
            progress: dict[str, Any] | None = None
            if isinstance(event, TextDelta) and event.text:
                text += event.text
                progress = {"type": "text", "text": event.text}
            elif isinstance(event, ToolCallDelta):
                calls.append(spec_call(event.call))
                progress = {"type": "tool_call", "tool_call": calls[-1], "parse_status": "succeeded"}
            elif isinstance(event, ChoiceFinished):
                finish = event.finish_reason
            if progress is not None:
                yield payload({"event_type": "step_progress", "step_type": "inference", "step_id": step["step_id"],
                               "delta": progress})
    message.update({"role": "assistant", "content": text, "stop_reason": stop_reason(finish), "tool_calls": calls})
    step["model_response"] = message
    yield await _complete_step(setup, state, step_span, step)


async def _tool_step(setup: TurnSetup, state: TurnState, span: Span, calls: list[dict[str, Any]], *,
                     given: list[dict[str, Any]] | None = None) -> AsyncGenerator[Chunk, None]:
    """Run server `calls` here, or record the client's `given` responses to them."""
    step = _step(state, "tool_execution")
    step_span = span.child("agents.step.tool_execution", {"step_id": step["step_id"], "step_type": "tool_execution",
                                                          "tools": ",".join(c["tool_name"] for c in calls)})
    yield payload({"event_type": "step_start", "step_type": "tool_execution", "step_id": step["step_id"]})
    if given is not None:
        responses = given
    else:
        responses = []
        for call in calls:
            responses.append(tool_response(call, await _invoke(setup, call)))
    step.update(tool_calls=calls, tool_responses=responses)
    yield await _complete_step(setup, state, step_span, step)


async def _shield_step(setup: TurnSetup, state: TurnState, span: Span, shields: Sequence[str],
                       conversation: Sequence[tuple[str, str]], refusal: dict[str, Any]) -> AsyncGenerator[Chunk, None]:
    """Run `shields` in order; on the first violation, `refusal` becomes the turn's answer (its user_message)."""
    assert setup.shield is not None, "an agent with shields needs setup.shield"
    step = _step(state, "shield_call")
    step_span = span.child("agents.step.shield_call", {"step_id": step["step_id"], "step_type": "shield_call",
                                                       "shields": ",".join(shields)})
    yield payload({"event_type": "step_start", "step_type": "shield_call", "step_id": step["step_id"]})
    for shield_id in shields:
        violation = (await setup.shield(shield_id, conversation)).violation()
        if violation is not None:  # the spec's `violation` is optional, not nullable: a pass leaves it out
            step["violation"] = violation
            refusal.update(role="assistant", content=violation["user_message"], stop_reason="end_of_turn",
                           tool_calls=[])
            break
    yield await _complete_step(setup, state, step_span, step)


async def _invoke(setup: TurnSetup, call: Mapping[str, Any]) -> dict[str, Any]:
    tool = setup.tools[call["tool_name"]]
    arguments = json.loads(call["arguments_json"])
    try:
        return await setup.runtime.invoke(tool.definition, {**arguments, **tool.args})
    except (ApiError, DomainError) as exc:  # a tool's failure is the model's to read, not the turn's end
        return {"content": "", "error_message": exc.message}
