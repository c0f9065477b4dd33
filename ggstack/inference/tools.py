"""Function tools: what a request offers, how the model is told about them, and how its calls are read back.

Engine-neutral and API-neutral: the OpenAI handlers build `ToolSpec`/`ToolChoice` from
`tools`/`tool_choice`, the legacy Llama Stack handlers from `ToolDefinition`/`tool_config`.
A forced choice (`required` or a named function) is enforced by a JSON schema the engine
turns into a grammar; `auto` relies on the model following the tool format (its chat
template's, or the Hermes-style instructions in `tools_instructions`) and on `parsing.py`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ggstack.core.errors import InvalidValueError

ToolChoiceMode = Literal["auto", "none", "required", "function"]
#: The modes that name no function.
PLAIN_MODES: tuple[ToolChoiceMode, ...] = ("auto", "none", "required")

#: A tool whose `parameters` say nothing still takes a JSON object of arguments.
ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True)
class ToolSpec:
    """One function the model may call; `parameters` is a JSON schema of its arguments object."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None

    def as_openai(self) -> dict[str, Any]:
        """The `{"type": "function", "function": {...}}` form chat templates expect."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters or ANY_OBJECT)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """`auto`, `none`, `required`, or `function` with the one function that must be called."""

    mode: ToolChoiceMode = "auto"
    name: str | None = None

    @classmethod
    def of(cls, value: str) -> ToolChoice:
        """`auto`, `none` or `required`; any other value is the name of the function to call."""
        for mode in PLAIN_MODES:
            if value == mode:
                return cls(mode)
        return cls("function", value)

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "function")


@dataclass(frozen=True)
class ToolCall:
    """A call the model made; `arguments` is JSON text of an object (OpenAI's wire form)."""

    id: str
    name: str
    arguments: str

    def arguments_object(self) -> dict[str, Any]:
        """The arguments parsed (always a dict: calls are only built from JSON objects)."""
        return json.loads(self.arguments)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# -- from OpenAI requests --------------------------------------------------------------------


def openai_tools(tools: Sequence[Mapping[str, Any]] | None, functions: Sequence[Mapping[str, Any]] | None = None,
                 ) -> list[ToolSpec]:
    """`tools` (type function) or the deprecated `functions`, checked: names present and unique."""
    specs: list[ToolSpec] = []
    if tools:
        for i, tool in enumerate(tools):
            if tool.get("type", "function") != "function" or not isinstance(tool.get("function"), Mapping):
                raise InvalidValueError(f"tools[{i}] must be a function tool ({{'type': 'function', 'function': ...}})",
                                        field=f"tools[{i}]")
            specs.append(_function_spec(tool["function"], f"tools[{i}].function"))
    elif functions:
        specs = [_function_spec(f, f"functions[{i}]") for i, f in enumerate(functions)]
    return unique_names(specs)


def unique_names(specs: list[ToolSpec]) -> list[ToolSpec]:
    """`specs`, refused when two tools share a name (a call could not say which it means)."""
    names = [s.name for s in specs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InvalidValueError(f"tool name '{duplicate}' is given more than once", field="tools")
    return specs


def _function_spec(function: Mapping[str, Any], param: str) -> ToolSpec:
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidValueError(f"{param}.name must be a non-empty string", field=f"{param}.name")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, Mapping):
        raise InvalidValueError(f"{param}.parameters must be a JSON schema object", field=f"{param}.parameters")
    description = function.get("description")
    return ToolSpec(name=name, description=description if isinstance(description, str) else "",
                    parameters=dict(parameters) if parameters else None)


def openai_tool_choice(choice: str | Mapping[str, Any] | None, tools: Sequence[ToolSpec], *,
                       function_call: str | Mapping[str, Any] | None = None) -> ToolChoice:
    """`tool_choice` (or the deprecated `function_call`); defaults as OpenAI's: auto with tools, else none."""
    param = "tool_choice"
    if choice is None and function_call is not None:
        choice, param = function_call, "function_call"
    if choice is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(choice, str):
        if choice not in PLAIN_MODES:
            raise InvalidValueError(f"{param} must be auto, none, required or a named function", field=param)
        result = ToolChoice.of(choice)
    else:
        function = choice.get("function") if "function" in choice else choice  # function_call: {"name": ...}
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InvalidValueError(f"{param} must name a function: {{'type': 'function', 'function': {{'name': ...}}}}",
                                    field=param)
        result = ToolChoice("function", name)
    check_tool_choice(result, tools, param=param)
    return result


def check_tool_choice(choice: ToolChoice, tools: Sequence[ToolSpec], *, param: str = "tool_choice") -> None:
    """A forced choice needs tools, and a named one a tool of that name."""
    if choice.forced and not tools:
        raise InvalidValueError(f"{param} '{choice.name or choice.mode}' needs tools, and none were given", field=param)
    if choice.mode == "function" and all(t.name != choice.name for t in tools):
        raise InvalidValueError(f"{param} names '{choice.name}', which is not one of the tools", field=param)


# -- constraining and describing --------------------------------------------------------------


def call_schema(tool: ToolSpec) -> dict[str, Any]:
    """JSON schema of one call: `{"name": <const>, "arguments": <the tool's parameters>}`, name first."""
    return {"type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": dict(tool.parameters or ANY_OBJECT)},
            "required": ["name", "arguments"]}


def forced_call_schema(tools: Sequence[ToolSpec], choice: ToolChoice, *, parallel: bool) -> dict[str, Any]:
    """What the output must be when a call is forced.

    A named function: exactly one call of it. `required`: one call of any of the tools, or,
    when parallel calls are allowed, a JSON array of one or more (as vLLM does).
    """
    if choice.mode == "function":
        return call_schema(next(t for t in tools if t.name == choice.name))
    one = call_schema(tools[0]) if len(tools) == 1 else {"anyOf": [call_schema(t) for t in tools]}
    return {"type": "array", "items": one, "minItems": 1} if parallel else one


TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def tools_instructions(tools: Sequence[ToolSpec], choice: ToolChoice) -> str:
    """A system prompt in the Hermes function-calling format, for templates that ignore `tools`.

    Hermes-style tags are what most small open models were tuned on (Qwen, Hermes, SmolLM2's
    tool data), and `parsing.py` reads them back; a model that ignores this just answers.
    """
    listing = "\n".join(json.dumps(t.as_openai(), ensure_ascii=False) for t in tools)
    lines = [
        ("You may call one or more functions to help with the user's request. The functions are "
         "described as JSON schemas inside <tools></tools>:"),
        f"<tools>\n{listing}\n</tools>",
        ("To call a function, answer with a JSON object holding the function name and its arguments "
         f"inside {TOOL_CALL_OPEN}{TOOL_CALL_CLOSE} tags:"),
        f'{TOOL_CALL_OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n{TOOL_CALL_CLOSE}',
    ]
    if choice.mode == "function":
        lines.append(f"You must call the function {choice.name}.")
    elif choice.mode == "required":
        lines.append("You must call at least one function.")
    else:
        lines.append("If no function is needed, answer the user directly.")
    return "\n".join(lines)


def tool_call_text(name: str, arguments: Mapping[str, Any] | str) -> str:
    """How an earlier call is written back into the conversation for templates without tool support."""
    args = _arguments_value(arguments)
    return f"{TOOL_CALL_OPEN}\n{json.dumps({'name': name, 'arguments': args}, ensure_ascii=False)}\n{TOOL_CALL_CLOSE}"


def _arguments_value(arguments: Mapping[str, Any] | str) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return arguments
    return dict(arguments)


def arguments_for_template(arguments: Mapping[str, Any] | str) -> Any:
    """Templates (Qwen, Hermes, Llama 3.1) expect arguments as a dict, as Hugging Face passes them."""
    return _arguments_value(arguments)


# -- reading calls back ------------------------------------------------------------------------


def parse_calls(text: str, tools: Sequence[ToolSpec]) -> list[ToolCall] | None:
    """Calls in `text` if it is nothing but a call or a list of calls, else None.

    Accepted: `{"name", "arguments"}` (or Llama 3's `"parameters"`), a list of those, the same
    inside a ```json fence or after `<|python_tag|>`. A name that is not one of the tools, or
    arguments that are not an object, mean the text is not a call: it is then the answer.
    """
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):].strip()
    if body.startswith("```"):
        body = body[3:]
        body = body.removeprefix("json")
        body = body.removesuffix("```").strip()
    if not body or body[0] not in "{[":
        return None
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return None
    items = value if isinstance(value, list) else [value]
    names = {t.name for t in tools}
    calls: list[ToolCall] = []
    for item in items:
        call = _call_from(item, names)
        if call is None:
            return None
        calls.append(call)
    return calls or None


def _call_from(item: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict) and "name" not in item:  # {"type": "function", "function": {...}}
        item = item["function"]
    name = item.get("name")
    if name not in names:
        return None
    args = item.get("arguments", item.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(id=new_call_id(), name=name, arguments=json.dumps(args, ensure_ascii=False))
