"""A create request read into what generation needs: the input items (as stored), the
conversation as chat `Message`s, the function tools, the file searches and the text format.

Request bodies arrive as plain dicts (the validated model dumped), as in the chat handler.
Input items are given ids where the client sent none, so `input_items` can page by id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.core.ids import new_id
from ggstack.inference.messages import Message, text_content
from ggstack.inference.options import response_format_schema
from ggstack.inference.tools import ToolCall, ToolSpec

#: Id prefixes of items the client sent without one (OpenAI's, where it has them).
ID_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_",
               "file_search_call": "fs_"}
#: Input part types that are text, as the chat parts `text_content` reads.
TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
DEFAULT_SEARCH_RESULTS = 10
MAX_SEARCH_RESULTS = 50


def input_items(value: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`input` as a list of items, each with an id; a string is one user message.

    Items ggstack cannot act on (web search, MCP) are refused here, naming the item.
    """
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}],
                 "id": new_id("msg_")}]
    if not value:
        raise InvalidValueError("input must not be empty", field="input")
    items = []
    for i, raw in enumerate(value):
        kind = raw.get("type")
        if kind not in ID_PREFIXES:
            raise InvalidValueError(f"input[{i}] has type {kind}; ggstack takes messages, function calls and their "
                                    "outputs, and file search calls", field=f"input[{i}]")
        item = dict(raw)
        item.setdefault("id", new_id(ID_PREFIXES[kind]))
        if kind == "message":  # checked now, so a bad part is refused before anything is stored
            message_text(item["content"], param=f"input[{i}].content")
        items.append(item)
    return items


def message_text(content: str | Sequence[Mapping[str, Any]], *, param: str) -> str:
    """A message's text: the string, or its text parts joined (images are refused)."""
    if isinstance(content, str):
        return content
    parts = [{**part, "type": TEXT_PARTS[part["type"]]} if part.get("type") in TEXT_PARTS else part
             for part in content]
    return text_content(parts, param=param)


def conversation_messages(items: Sequence[Mapping[str, Any]], *, system: str | None = None) -> list[Message]:
    """The conversation as chat turns, `system` (instructions, search results) first.

    Function calls join the assistant turn before them, as the model produced them;
    file search calls are left out (their results were that turn's context, not a turn).
    """
    out: list[Message] = [Message("system", system)] if system else []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = item["role"]
            text = message_text(item["content"], param="input")
            out.append(Message("system" if role in ("system", "developer") else role, text))
        elif kind == "function_call":
            call = ToolCall(id=item["call_id"], name=item["name"], arguments=item["arguments"])
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = Message("assistant", last.content, tool_calls=(*last.tool_calls, call))
            else:
                out.append(Message("assistant", "", tool_calls=(call,)))
        elif kind == "function_call_output":
            out.append(Message("tool", item["output"], tool_call_id=item["call_id"]))
    return out


def last_user_text(items: Sequence[Mapping[str, Any]]) -> str:
    """What the user asked last ("" when the input has no user message): the file search query."""
    for item in reversed(items):
        if item["type"] == "message" and item["role"] == "user":
            return message_text(item["content"], param="input").strip()
    return ""


# -- tools -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSearchTool:
    """A `file_search` tool: the stores to search and how."""

    vector_store_ids: tuple[str, ...]
    max_num_results: int = DEFAULT_SEARCH_RESULTS
    filters: Mapping[str, Any] | None = None
    ranking_options: Mapping[str, Any] | None = None


def request_tools(tools: Sequence[Mapping[str, Any]] | None) -> tuple[list[ToolSpec], list[FileSearchTool]]:
    """Function tools for the model, file searches for the server; other tool types are refused."""
    functions: list[ToolSpec] = []
    searches: list[FileSearchTool] = []
    for i, tool in enumerate(tools or ()):
        kind, param = tool.get("type"), f"tools[{i}]"
        if kind == "function":
            if any(f.name == tool["name"] for f in functions):
                raise InvalidValueError(f"tool name '{tool['name']}' is given more than once", field=f"{param}.name")
            if not tool["name"]:
                raise InvalidValueError(f"{param}.name must not be empty", field=f"{param}.name")
            description = tool.get("description")
            functions.append(ToolSpec(name=tool["name"], description=description if isinstance(description, str)
                                      else "", parameters=tool.get("parameters") or None))
        elif kind == "file_search":
            searches.append(file_search_tool(tool, param))
        else:
            raise InvalidValueError(f"{param} has type {kind}; ggstack serves function and file_search tools only",
                                    field=param)
    return functions, searches


def file_search_tool(tool: Mapping[str, Any], param: str) -> FileSearchTool:
    ids = tuple(tool.get("vector_store_ids") or ())
    if not ids:
        raise InvalidValueError(f"{param}.vector_store_ids must name at least one vector store",
                                field=f"{param}.vector_store_ids")
    k = tool.get("max_num_results", DEFAULT_SEARCH_RESULTS)
    if not 1 <= k <= MAX_SEARCH_RESULTS:
        raise InvalidValueError(f"{param}.max_num_results must be between 1 and {MAX_SEARCH_RESULTS}",
                                field=f"{param}.max_num_results")
    return FileSearchTool(vector_store_ids=ids, max_num_results=k, filters=tool.get("filters"),
                          ranking_options=tool.get("ranking_options"))


# -- text format -------------------------------------------------------------------------------


def text_format(text: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The `text` the response reports, and the JSON schema the output must follow (None for text)."""
    fmt = dict((text or {}).get("format") or {"type": "text"})
    if fmt["type"] == "json_schema":
        spec = {"schema": fmt["schema"]} if fmt.get("schema") is not None else {}
        return {"format": fmt}, response_format_schema({"type": "json_schema", "json_schema": spec})
    return {"format": fmt}, response_format_schema({"type": fmt["type"]})
