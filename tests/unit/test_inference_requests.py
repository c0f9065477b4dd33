"""Request mapping: sampling options, tools and tool_choice, response formats, messages, prompts."""

from __future__ import annotations

import json

import jsonschema
import pytest

from generated.models.llama_stack_deprecated import OpenaiChatCompletionRequest
from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import SamplingOptions
from ggstack.http.errors import InvalidRequest, naming
from ggstack.inference import options
from ggstack.inference.completions import choice_grammar, completion_prompts, gbnf_literal
from ggstack.inference.messages import openai_messages, template_messages, with_system_text
from ggstack.inference.tools import (
    ToolChoice,
    forced_call_schema,
    openai_tool_choice,
    openai_tools,
    tools_instructions,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time"}}


# -- sampling options --------------------------------------------------------------------------


def test_unsent_fields_keep_engine_defaults():
    assert options.sampling_options() == SamplingOptions()


def test_fields_map_and_stop_becomes_a_list_without_empties():
    o = options.sampling_options(max_tokens=5, temperature=0, top_p=0.5, seed=7, stop="END", logprobs=3)
    assert (o.max_tokens, o.temperature, o.top_p, o.seed, o.stop, o.logprobs) == (5, 0, 0.5, 7, ["END"], 3)
    assert options.stop_list(["a", "", "b"]) == ["a", "b"]


@pytest.mark.parametrize("kwargs, param", [
    ({"temperature": 2.5}, "temperature"), ({"temperature": -1}, "temperature"), ({"top_p": 1.5}, "top_p"),
    ({"presence_penalty": 3}, "presence_penalty"), ({"frequency_penalty": -3}, "frequency_penalty"),
])
def test_out_of_range_values_name_their_field(kwargs, param):
    # Some are checked here, some by the engine layer; either way the HTTP error names the field.
    with pytest.raises(InvalidRequest) as info, naming({}):
        options.sampling_options(**kwargs)
    assert info.value.param == param


def test_any_integer_seed_is_accepted_and_stays_reproducible():
    assert options.sampling_options(seed=-1).seed == options.sampling_options(seed=-1).seed
    assert 0 <= options.sampling_options(seed=2**40).seed < 2**32 - 1


def test_token_limit_prefers_the_first_given_and_names_it():
    assert options.token_limit(("max_completion_tokens", None), ("max_tokens", 9)) == 9
    assert options.token_limit(("max_completion_tokens", 4), ("max_tokens", 9)) == 4
    with pytest.raises(InvalidValueError) as info:
        options.token_limit(("max_completion_tokens", 0), ("max_tokens", 9))
    assert info.value.field == "max_completion_tokens"


def test_top_logprobs_needs_logprobs_and_a_range():
    assert options.top_logprobs_count(None, None) is None
    assert options.top_logprobs_count(True, None) == 0
    assert options.top_logprobs_count(True, 5) == 5
    for logprobs, top in [(False, 2), (True, 21), (True, -1)]:
        with pytest.raises(InvalidValueError) as info:
            options.top_logprobs_count(logprobs, top)
        assert info.value.field == "top_logprobs"


def test_choice_count_bounds():
    assert options.choice_count(None) == 1
    with pytest.raises(InvalidValueError):
        options.choice_count(0)
    with pytest.raises(InvalidValueError):
        options.choice_count(options.MAX_CHOICES + 1)


def test_choices_get_distinct_seeds_only_when_a_seed_is_given():
    seeded = SamplingOptions(seed=10)
    assert [options.for_choice(seeded, j).seed for j in range(3)] == [10, 11, 12]
    assert options.for_choice(SamplingOptions(), 2).seed is None


def test_response_formats():
    assert options.response_format_schema(None) is None
    assert options.response_format_schema({"type": "text"}) is None
    assert options.response_format_schema({"type": "json_object"}) == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert options.response_format_schema({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}) \
        == schema
    with pytest.raises(InvalidValueError):
        options.response_format_schema({"type": "xml"})


def test_schema_numbers_reach_the_engine_as_sent():
    # Free-form JSON is Any in the generated models: a schema's 4000 stays an int (grammar
    # converters repeat a rule `minLength` times and cannot take 4000.0).
    body = OpenaiChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "s", "schema": {"type": "string", "minLength": 4000, "enum": [1.5, 2, True]}}}})
    assert body.response_format is not None
    schema = options.response_format_schema(body.response_format.model_dump(by_alias=True, exclude_none=True))
    assert schema == {"type": "string", "minLength": 4000, "enum": [1.5, 2, True]}
    assert type(schema["minLength"]) is int and type(schema["enum"][1]) is int and schema["enum"][2] is True


# -- tools -------------------------------------------------------------------------------------


def test_openai_tools_and_deprecated_functions():
    tools = openai_tools([WEATHER, TIME])
    assert [t.name for t in tools] == ["get_weather", "get_time"]
    assert tools[1].as_openai() == {"type": "function", "function": {"name": "get_time",
                                                                     "parameters": {"type": "object"}}}
    assert openai_tools(None, [WEATHER["function"]])[0].name == "get_weather"


@pytest.mark.parametrize("tools", [[{"type": "retrieval"}], [{"type": "function", "function": {}}],
                                   [WEATHER, WEATHER]])
def test_bad_tools_are_400(tools):
    with pytest.raises(InvalidValueError):
        openai_tools(tools)


def test_tool_choice_forms_and_defaults():
    tools = openai_tools([WEATHER, TIME])
    assert openai_tool_choice(None, tools) == ToolChoice("auto")
    assert openai_tool_choice(None, []) == ToolChoice("none")
    assert openai_tool_choice("required", tools) == ToolChoice("required")
    assert openai_tool_choice({"type": "function", "function": {"name": "get_time"}}, tools) == \
        ToolChoice("function", "get_time")
    assert openai_tool_choice(None, tools, function_call={"name": "get_weather"}) == ToolChoice("function",
                                                                                                "get_weather")


@pytest.mark.parametrize("choice", ["always", {"type": "function", "function": {"name": "nope"}}, "required"])
def test_bad_tool_choice_is_400(choice):
    tools = [] if choice == "required" else openai_tools([WEATHER])
    with pytest.raises(InvalidValueError) as info:
        openai_tool_choice(choice, tools)
    assert info.value.field == "tool_choice"


def test_forced_schemas_accept_calls_and_refuse_other_json():
    tools = openai_tools([WEATHER, TIME])
    named = forced_call_schema(tools, ToolChoice("function", "get_weather"), parallel=True)
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Oslo"}}, named)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "get_time", "arguments": {}}, named)
    many = forced_call_schema(tools, ToolChoice("required"), parallel=True)
    jsonschema.validate([{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "x"}}],
                        many)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([], many)
    one = forced_call_schema(tools, ToolChoice("required"), parallel=False)
    jsonschema.validate({"name": "get_time", "arguments": {}}, one)


def test_instructions_list_every_tool_and_say_what_is_forced():
    tools = openai_tools([WEATHER, TIME])
    text = tools_instructions(tools, ToolChoice("function", "get_time"))
    assert '"get_weather"' in text and '"get_time"' in text and "<tool_call>" in text
    assert "must call the function get_time" in text


# -- messages ----------------------------------------------------------------------------------


CONVERSATION = [
    {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": "Weather in Oslo and Rome?"},
    {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    {"role": "tool", "tool_call_id": "call_2", "content": "sun"},
]


def test_native_template_messages_carry_structured_calls_and_results():
    turns = template_messages(openai_messages(CONVERSATION), native=True)
    assert turns[0] == {"role": "system", "content": "Be brief."}
    assert turns[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert turns[2]["content"] == ""
    assert turns[3] == {"role": "tool", "content": "rain", "tool_call_id": "call_1", "name": "get_weather"}


def test_text_template_messages_write_calls_and_results_as_hermes_text():
    turns = template_messages(openai_messages(CONVERSATION), native=False)
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[2]["content"].count("<tool_call>") == 2 and '"city": "Rome"' in turns[2]["content"]
    results = turns[3]["content"]
    assert results.count("<tool_response>") == 2
    assert json.loads(results.split("\n")[1]) == {"name": "get_weather", "content": "rain"}
    assert with_system_text(turns, "TOOLS")[0]["content"] == "Be brief.\n\nTOOLS"
    assert with_system_text(turns[1:], "TOOLS")[0] == {"role": "system", "content": "TOOLS"}


def test_non_text_parts_and_bad_roles_are_400():
    with pytest.raises(InvalidValueError) as info:
        openai_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
    assert info.value.field == "messages[0].content[0]"
    with pytest.raises(InvalidValueError):
        openai_messages([{"role": "wizard", "content": "x"}])
    with pytest.raises(InvalidValueError):
        openai_messages([])


# -- completions -------------------------------------------------------------------------------


def test_completion_prompt_forms():
    assert completion_prompts("hi") == ["hi"]
    assert completion_prompts(["a", "b"]) == ["a", "b"]
    assert completion_prompts([1, 2, 3]) == [[1, 2, 3]]
    assert completion_prompts([[1], [2, 3]]) == [[1], [2, 3]]
    for bad in ([], [[]], ["a", 1]):
        with pytest.raises(InvalidValueError):
            completion_prompts(bad)


def test_choice_grammar_escapes_literals():
    assert choice_grammar(["yes", "no"]) == 'root ::= "yes" | "no"'
    assert gbnf_literal('say "hi"\\\n\x01') == '"say \\"hi\\"\\\\\\n\\x01"'
    with pytest.raises(InvalidValueError):
        choice_grammar([])
