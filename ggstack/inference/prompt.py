"""A chat request made ready to generate: the prompt text, the final sampling options, how to read the output.

Whether a model's template knows tools is found by trying it: a template that renders the
same prompt with and without `tools` ignores them (SmolLM2's, plain chatml), and then the
tools are described in the system turn instead (`tools_instructions`). Rendering is a
Jinja call, cheap enough to do twice per request on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import ChatEngine, SamplingOptions
from ggstack.inference.messages import (
    Message,
    called_names,
    has_tool_turns,
    template_messages,
    with_system_text,
    with_user_prefix,
)
from ggstack.inference.parsing import ForcedCallParser, OutputParser, PlainParser, ToolCallParser
from ggstack.inference.tools import (
    ToolChoice,
    ToolSpec,
    check_tool_choice,
    forced_call_schema,
    tools_instructions,
)

NO_TOOLS = ToolChoice("none")


@dataclass(frozen=True)
class ChatPlan:
    """Everything `generation.generate_events` needs for a chat request."""

    prompt: str
    options: SamplingOptions
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = NO_TOOLS
    parallel_tool_calls: bool = True
    native_tools: bool = False

    def parser(self) -> OutputParser:
        """A fresh output parser for one choice."""
        if not self.tools or self.tool_choice.mode == "none":
            return PlainParser()
        if self.tool_choice.forced:
            return ForcedCallParser(self.tools)
        if self.options.json_schema is not None or self.options.grammar is not None:
            return PlainParser()  # the answer is constrained to the response format: it is the answer
        return ToolCallParser(self.tools)


def plan_chat(engine: ChatEngine, messages: Sequence[Message], options: SamplingOptions, *,
              tools: Sequence[ToolSpec] = (), tool_choice: ToolChoice | None = None,
              parallel_tool_calls: bool = True) -> ChatPlan:
    """Render the prompt and settle the options (a forced tool call becomes a JSON schema).

    `options` carries the response format (json_schema/grammar) already; a forced tool call
    cannot be combined with one (InvalidValueError on tool_choice).
    """
    choice = tool_choice or ToolChoice("auto" if tools else "none")
    check_tool_choice(choice, tools)
    active = tuple(tools) if choice.mode != "none" else ()
    if choice.forced:
        if options.json_schema is not None or options.grammar is not None:
            raise InvalidValueError(f"tool_choice '{choice.name or choice.mode}' cannot be combined with a JSON "
                                    "response_format", field="tool_choice")
        options = replace(options, json_schema=forced_call_schema(active, choice, parallel=parallel_tool_calls))
    probe = active or tuple(tools) or tuple(ToolSpec(n) for n in called_names(messages))
    native = bool(probe) and (bool(active) or has_tool_turns(messages)) and template_uses_tools(engine, probe)
    turns = template_messages(messages, native=native)
    if native:
        prompt = engine.render_chat(turns, tools=[t.as_openai() for t in active] or None)
    elif active:
        prompt = _render_with_instructions(engine, turns, tools_instructions(active, choice))
    else:
        prompt = engine.render_chat(turns)
    return ChatPlan(prompt=prompt, options=options, tools=active, tool_choice=choice,
                    parallel_tool_calls=parallel_tool_calls, native_tools=native)


def template_uses_tools(engine: ChatEngine, tools: Sequence[ToolSpec]) -> bool:
    """True when the model's chat template writes `tools` into the prompt."""
    probe: list[dict[str, Any]] = [{"role": "user", "content": "ping"}]
    try:
        with_tools = engine.render_chat(probe, tools=[t.as_openai() for t in tools])
        without = engine.render_chat(probe)
    except InvalidValueError:
        return False
    return with_tools != without


def _render_with_instructions(engine: ChatEngine, turns: list[dict[str, Any]], instructions: str) -> str:
    try:
        return engine.render_chat(with_system_text(turns, instructions))
    except InvalidValueError:
        # some templates (Gemma 2, Mistral v1) refuse a system turn
        return engine.render_chat(with_user_prefix(turns, instructions))
