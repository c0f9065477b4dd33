"""Chat messages in one plain form, whatever API they came from, and as chat templates want them.

Templates are Jinja written for Hugging Face's message dicts; many concatenate
`message['content']` as a string, so content here is always a string (text parts joined).
Templates that know tools get assistant `tool_calls` and `tool` messages as Hugging Face
passes them; for the others (`native=False`) calls and results are written into the text
in the same Hermes format the tool instructions describe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ggstack.core.errors import InvalidValueError
from ggstack.inference.tools import ToolCall, arguments_for_template, new_call_id, tool_call_text

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One turn. `tool_calls` only on assistant turns, `tool_call_id` only on tool results."""

    role: Role
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


def text_content(content: str | Sequence[Any] | None, *, param: str) -> str:
    """String content, or text parts joined by newlines; other parts (images, files, audio) are refused."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        else:
            raise InvalidValueError(f"{param}[{j}] has type {kind or 'unknown'}; the local models read text only",
                                    field=f"{param}[{j}]")
    return "\n".join(texts)


def openai_messages(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """OpenAI chat `messages` (as plain dicts) -> `Message`s; `developer` is a system turn."""
    if not messages:
        raise InvalidValueError("messages must not be empty", field="messages")
    out: list[Message] = []
    for i, raw in enumerate(messages):
        param = f"messages[{i}]"
        role = raw.get("role")
        content = text_content(raw.get("content"), param=f"{param}.content")
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        if role in ("system", "developer", "user"):
            out.append(Message("user" if role == "user" else "system", content, name=name))
        elif role == "assistant":
            calls = tuple(_openai_call(c, f"{param}.tool_calls[{j}]") for j, c in enumerate(raw.get("tool_calls") or ()))
            if not calls and isinstance(raw.get("function_call"), Mapping):  # deprecated single call
                calls = (_openai_call({"function": raw["function_call"]}, f"{param}.function_call"),)
            out.append(Message("assistant", content, name=name, tool_calls=calls))
        elif role in ("tool", "function"):
            call_id = raw.get("tool_call_id") or ""
            out.append(Message("tool", content, name=name, tool_call_id=call_id))
        else:
            raise InvalidValueError(f"{param}.role {role!r} is not a chat role", field=f"{param}.role")
    return out


def _openai_call(call: Mapping[str, Any], param: str) -> ToolCall:
    function = call.get("function") or {}
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"{param} has no function name", field=param)
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
    return ToolCall(id=call.get("id") or new_call_id(), name=name, arguments=arguments)


def has_tool_turns(messages: Sequence[Message]) -> bool:
    return any(m.tool_calls or m.role == "tool" for m in messages)


def called_names(messages: Sequence[Message]) -> list[str]:
    """Names of every function called earlier in the conversation, first call first."""
    names: list[str] = []
    for m in messages:
        names.extend(c.name for c in m.tool_calls if c.name not in names)
    return names


def template_messages(messages: Sequence[Message], *, native: bool) -> list[dict[str, Any]]:
    """Dicts for `ChatEngine.render_chat`.

    native: `tool_calls` with dict arguments and `tool` turns carrying the function's name
    (found from the call id). Otherwise calls become `<tool_call>` text in the assistant turn
    and results `<tool_response>` text in a user turn, consecutive results merged into one.
    """
    names_by_id = {c.id: c.name for m in messages for c in m.tool_calls}
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            name = m.name or names_by_id.get(m.tool_call_id or "")
            if native:
                turn: dict[str, Any] = {"role": "tool", "content": m.content, "tool_call_id": m.tool_call_id}
                if name:
                    turn["name"] = name
                out.append(turn)
                continue
            result = json.dumps({"name": name, "content": m.content} if name else {"content": m.content},
                                ensure_ascii=False)
            text = f"<tool_response>\n{result}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, "_tool_results": True})
            continue
        turn = {"role": m.role, "content": m.content}
        if m.name:
            turn["name"] = m.name
        if m.tool_calls:
            if native:
                turn["tool_calls"] = [{"id": c.id, "type": "function",
                                       "function": {"name": c.name,
                                                    "arguments": arguments_for_template(c.arguments)}}
                                      for c in m.tool_calls]
            else:
                calls = "\n".join(tool_call_text(c.name, c.arguments) for c in m.tool_calls)
                turn["content"] = f"{m.content}\n{calls}" if m.content else calls
        out.append(turn)
    for turn in out:
        turn.pop("_tool_results", None)
    return out


def with_system_text(turns: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`text` appended to the first system turn, or a new system turn in front."""
    if turns and turns[0]["role"] == "system":
        first = dict(turns[0])
        first["content"] = f"{first['content']}\n\n{text}" if first["content"] else text
        return [first, *turns[1:]]
    return [{"role": "system", "content": text}, *turns]


def with_user_prefix(turns: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """`text` in front of the first user turn (for templates that refuse a system turn)."""
    out = [dict(t) for t in turns]
    for turn in out:
        if turn["role"] == "user":
            turn["content"] = f"{text}\n\n{turn['content']}"
            return out
    return [{"role": "user", "content": text}, *out]
