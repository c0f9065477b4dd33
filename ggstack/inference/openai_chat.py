"""An OpenAI-shaped chat request, planned: the one path from request fields to generation events.

Llama Stack's OpenAI chat completions and Dell's OpenAI-shaped one read the same fields the
same way; what each API does not have (Dell: tools, `n`, `seed`, `response_format`) is simply
absent from its request. Handlers decide what is given (`exclude_unset` keeps llama.cpp's
defaults for fields a schema defaults), name errors, store and shape the answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggstack.core.ids import new_id, now
from ggstack.engines.base import ChatEngine
from ggstack.inference import generation, options
from ggstack.inference.messages import openai_messages
from ggstack.inference.openai_format import Dialect, OpenAIChatChunks
from ggstack.inference.prompt import plan_chat
from ggstack.inference.tools import ToolSpec, openai_tool_choice


@dataclass
class OpenAIChat:
    """A started chat: its events, and the id, time and options its answer is shaped with."""

    events: AsyncGenerator[generation.Event, None]
    id: str
    created: int
    model: str
    logprobs: bool
    include_usage: bool

    def chunk_shaper(self, dialect: Dialect) -> OpenAIChatChunks:
        return OpenAIChatChunks(id=self.id, created=self.created, model=self.model, logprobs=self.logprobs,
                                include_usage=self.include_usage, dialect=dialect)


def start_openai_chat(engine: ChatEngine, request: Mapping[str, Any], *,
                      tools: Sequence[ToolSpec] = ()) -> OpenAIChat:
    """`request` is the dumped body (JSON mode, by alias, without None); `tools` are its checked tools."""
    tool_choice = openai_tool_choice(request.get("tool_choice"), tools, function_call=request.get("function_call"))
    sampling = options.sampling_options(
        max_tokens=options.token_limit(("max_completion_tokens", request.get("max_completion_tokens")),
                                       ("max_tokens", request.get("max_tokens"))),
        temperature=request.get("temperature"), top_p=request.get("top_p"), seed=request.get("seed"),
        stop=request.get("stop"), presence_penalty=request.get("presence_penalty"),
        frequency_penalty=request.get("frequency_penalty"),
        logprobs=options.top_logprobs_count(request.get("logprobs"), request.get("top_logprobs")),
        json_schema=options.response_format_schema(request.get("response_format")),
        logit_bias=request.get("logit_bias"))
    plan = plan_chat(engine, openai_messages(request["messages"]), sampling, tools=tools, tool_choice=tool_choice,
                     parallel_tool_calls=request.get("parallel_tool_calls") is not False)
    events = generation.generate_events(engine, [plan.prompt], plan.options, n=options.choice_count(request.get("n")),
                                        parser=plan.parser, parallel_tool_calls=plan.parallel_tool_calls)
    return OpenAIChat(events, id=new_id("chatcmpl-"), created=now(), model=request["model"],
                      logprobs=bool(request.get("logprobs")),
                      include_usage=bool((request.get("stream_options") or {}).get("include_usage")))
