"""The shared generation layer on a real llama.cpp engine (tiny random GGUFs): prompts, tools, events, usage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

import anyio.to_thread
import jsonschema
import pytest

from ggstack.core.errors import ContextOverflowError, InvalidValueError
from ggstack.engines.base import Finish, SamplingOptions, TokenEvent
from ggstack.engines.llamacpp import LlamaCppChatEngine
from ggstack.inference import (
    ChoiceStarted,
    Finished,
    TextDelta,
    ToolChoice,
    collect,
    generate,
    generate_events,
    openai_messages,
    plan_chat,
)
from ggstack.inference.options import sampling_options
from ggstack.inference.tools import openai_tools
from tests.fixtures.gguf_builder import build_tiny_chat_gguf

pytestmark = pytest.mark.anyio

UNIT_TOOL = {"type": "function", "function": {
    "name": "set_unit", "description": "Choose the temperature unit",
    "parameters": {"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]},
                                                    "precise": {"type": "boolean"}},
                   "required": ["unit", "precise"], "additionalProperties": False}}}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}

# chatml plus tools: what a tool-aware template (Qwen, Hermes) does, in miniature
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@asynccontextmanager
async def loaded(path: Path) -> AsyncIterator[LlamaCppChatEngine]:
    engine = await LlamaCppChatEngine.load("tiny", path, context_length=2048)  # room for tool instructions
    try:
        yield engine
    finally:
        await anyio.to_thread.run_sync(engine.close)


@pytest.fixture
async def engine(tiny_chat_gguf):
    async with loaded(tiny_chat_gguf) as engine:
        yield engine


def user(text: str) -> list:
    return openai_messages([{"role": "user", "content": text}])


async def test_usage_is_the_engines_token_count(engine):
    plan = plan_chat(engine, user("hello"), sampling_options(temperature=0, max_tokens=12))
    result = await generate(engine, [plan.prompt], plan.options)
    assert result.usage.prompt_tokens == len(await engine.tokenize(plan.prompt))
    assert result.usage.completion_tokens == 12 and result.choices[0].finish_reason == "length"


async def test_n_choices_count_the_prompt_once_and_differ_by_seed(engine):
    plan = plan_chat(engine, user("hello"), sampling_options(temperature=2.0, top_p=1.0, top_k=0, min_p=0,
                                                              seed=3, max_tokens=8))
    result = await generate(engine, [plan.prompt], plan.options, n=3)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert result.usage.prompt_tokens == len(await engine.tokenize(plan.prompt))
    assert result.usage.completion_tokens == sum(c.completion_tokens for c in result.choices) == 24
    assert len({c.text for c in result.choices}) > 1
    again = await generate(engine, [plan.prompt], plan.options, n=3)
    assert [c.text for c in again.choices] == [c.text for c in result.choices]


async def test_logprobs_cover_every_generated_token(engine):
    plan = plan_chat(engine, user("hi"), sampling_options(temperature=0, max_tokens=10, logprobs=3))
    choice = (await generate(engine, [plan.prompt], plan.options)).choices[0]
    assert len(choice.logprobs) == 10
    assert "".join(e.token for e in choice.logprobs) == choice.text
    for entry in choice.logprobs:
        assert len(entry.top) == 3 and entry.logprob <= 0 and isinstance(entry.logprob, float)


async def test_stop_string_ends_the_choice(engine):
    free = await generate(engine, [plan_chat(engine, user("hi"), sampling_options(temperature=0, max_tokens=30))
                                   .prompt], SamplingOptions(temperature=0, max_tokens=30))
    text = free.choices[0].text
    stop = text[10:13]
    plan = plan_chat(engine, user("hi"), sampling_options(temperature=0, max_tokens=30, stop=[stop]))
    choice = (await generate(engine, [plan.prompt], plan.options)).choices[0]
    assert choice.text == text[:text.index(stop)] and choice.finish_reason == "stop"


async def test_tools_go_into_the_system_turn_when_the_template_ignores_them(engine):
    tools = openai_tools([WEATHER_TOOL])
    plan = plan_chat(engine, user("weather?"), SamplingOptions(), tools=tools)
    assert not plan.native_tools
    assert plan.prompt.startswith("<|im_start|>system\nYou may call") and '"get_weather"' in plan.prompt
    history = openai_messages([
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"}])
    prompt = plan_chat(engine, history, SamplingOptions()).prompt  # no tools offered now: history still readable
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}' in prompt
    assert '<|im_start|>user\n<tool_response>\n{"name": "get_weather", "content": "rain"}' in prompt


async def test_a_tool_aware_template_gets_tools_and_calls_natively(tmp_path):
    path = build_tiny_chat_gguf(tmp_path / "tools.gguf", chat_template=TOOL_TEMPLATE)
    async with loaded(path) as engine:
        tools = openai_tools([WEATHER_TOOL, UNIT_TOOL])
        history = openai_messages([
            {"role": "user", "content": "weather in Oslo?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                  "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "rain"}])
        plan = plan_chat(engine, history, SamplingOptions(), tools=tools)
        assert plan.native_tools
        assert plan.prompt.startswith("<|im_start|>system\nTOOLS:get_weather;set_unit;<|im_end|>")
        assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>' in plan.prompt
        assert "<|im_start|>tool\nrain<|im_end|>" in plan.prompt
        assert "You may call" not in plan.prompt


@pytest.mark.parametrize("choice, parallel", [(ToolChoice("function", "set_unit"), True),
                                              (ToolChoice("required"), False),
                                              (ToolChoice("required"), True)])
async def test_a_forced_choice_always_yields_valid_calls(engine, choice, parallel):
    tools = openai_tools([UNIT_TOOL])
    plan = plan_chat(engine, user("unit?"), sampling_options(temperature=0, max_tokens=200), tools=tools,
                     tool_choice=choice, parallel_tool_calls=parallel)
    result = await generate(engine, [plan.prompt], plan.options, parser=plan.parser,
                            parallel_tool_calls=parallel)
    calls = result.choices[0].tool_calls
    assert calls and result.choices[0].finish_reason == "tool_calls"
    assert result.choices[0].text == ""
    for call in calls:
        assert call.name == "set_unit"
        jsonschema.validate(json.loads(call.arguments), UNIT_TOOL["function"]["parameters"])


async def test_forced_choice_and_json_response_format_do_not_mix(engine):
    with pytest.raises(InvalidValueError) as info:
        plan_chat(engine, user("x"), SamplingOptions(json_schema={"type": "object"}),
                  tools=openai_tools([UNIT_TOOL]), tool_choice=ToolChoice("required"))
    assert info.value.field == "tool_choice"


async def test_json_schema_output_validates(engine):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                               "tags": {"type": "array", "items": {"enum": ["a", "b"]},
                                                        "maxItems": 3}},
              "required": ["name", "age", "tags"], "additionalProperties": False}
    plan = plan_chat(engine, user("json"), sampling_options(temperature=0, max_tokens=200, json_schema=schema))
    choice = (await generate(engine, [plan.prompt], plan.options, parser=plan.parser)).choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.text), schema)


async def test_errors_come_before_the_first_event(engine):
    events = generate_events(engine, ["x" * 3000], SamplingOptions(max_tokens=4))
    with pytest.raises(ContextOverflowError) as info:
        await anext(events)
    assert info.value.code == "context_length_exceeded"


class Watched:
    """A real engine whose generation streams report whether they were closed before finishing."""

    def __init__(self, engine: LlamaCppChatEngine) -> None:
        self.engine = engine
        self.context_length = engine.context_length
        self.closed_early: list[bool] = []
        self.tokens = 0

    def render_chat(self, *args, **kwargs):
        return self.engine.render_chat(*args, **kwargs)

    async def generate(self, prompt, options):
        finished = False
        try:
            async with aclosing(self.engine.generate(prompt, options)) as stream:
                async for item in stream:
                    self.tokens += isinstance(item, TokenEvent)
                    finished = isinstance(item, Finish)
                    yield item
        finally:
            self.closed_early.append(not finished)


async def test_closing_the_event_stream_closes_the_engine_stream(engine):
    watched = Watched(engine)
    events = generate_events(watched, ["hello"], SamplingOptions(temperature=0, max_tokens=400), n=2)
    async with aclosing(events):
        assert isinstance(await anext(events), ChoiceStarted)
        assert isinstance(await anext(events), TextDelta)
    assert watched.closed_early == [True]  # the second choice never started
    assert watched.tokens < 40


async def test_collect_of_a_finished_stream_has_usage(engine):
    events = generate_events(engine, ["a", "bb"], SamplingOptions(temperature=0, max_tokens=3))
    result = await collect(events)
    assert len(result.choices) == 2 and result.usage.completion_tokens == 6
    assert isinstance(Finished(result.usage), Finished)
