"""A session as chat messages: the agent's instructions, then each earlier turn as it happened.

A turn contributes its input messages, then each step: an inference step is the assistant's
message (with its tool calls), a tool execution step one tool message per response. A turn
left waiting for client tools contributes only its input: its dangling calls have no answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ggstack.inference.legacy import content_text
from ggstack.inference.messages import Message
from ggstack.inference.tools import ToolCall


def call_from_spec(call: Mapping[str, Any]) -> ToolCall:
    """A spec `ToolCall` ({call_id, tool_name, arguments}) as the generation layer's call."""
    arguments = call.get("arguments_json") or call.get("arguments") or {}
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=call["call_id"], name=call["tool_name"], arguments=arguments)


def input_messages(messages: Iterable[Mapping[str, Any]], param: str = "messages") -> list[Message]:
    out = []
    for i, message in enumerate(messages):
        text = content_text(message.get("content"), param=f"{param}[{i}].content")
        if message["role"] == "user":
            if message.get("context") is not None:
                text = f"{text}\n\n{content_text(message['context'], param=f'{param}[{i}].context')}"
            out.append(Message("user", text))
        else:
            out.append(Message("tool", text, tool_call_id=message.get("call_id") or ""))
    return out


def step_messages(steps: Sequence[Mapping[str, Any]]) -> list[Message]:
    out: list[Message] = []
    for step in steps:
        if step["step_type"] == "inference":
            response = step["model_response"]
            text = content_text(response.get("content") or "", param="content")
            out.append(Message("assistant", text,
                               tool_calls=tuple(call_from_spec(c) for c in response.get("tool_calls") or ())))
        elif step["step_type"] == "tool_execution":
            for result in step["tool_responses"]:
                out.append(Message("tool", content_text(result.get("content") or "", param="content"),
                                   name=result.get("tool_name"), tool_call_id=result["call_id"]))
    return out


def turn_messages(turn: Mapping[str, Any], *, complete: bool) -> list[Message]:
    """One stored turn; `complete=False` leaves out steps whose tool calls were never answered."""
    messages = input_messages(turn["input_messages"])
    return messages + step_messages(turn["steps"]) if complete else messages


def session_messages(instructions: str, turns: Iterable[Mapping[str, Any]]) -> list[Message]:
    messages = [Message("system", instructions)] if instructions else []
    for doc in turns:
        messages += turn_messages(doc["turn"], complete=doc["status"] == "completed")
    return messages
