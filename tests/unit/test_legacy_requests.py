"""Legacy Llama Stack (and Dell) requests and answers: the mapping onto the shared generation layer."""

from __future__ import annotations

import json

import pytest

from generated.models import dell_pro_ai_studio as dell_models
from generated.models import llama_stack_inference as models
from ggstack.core.errors import InvalidValueError
from ggstack.inference import dell, legacy
from ggstack.inference.generation import (
    Choice,
    ChoiceFinished,
    ChoiceStarted,
    Finished,
    Generation,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ggstack.inference.logprobs import TokenLogprob
from ggstack.inference.tools import ToolCall, ToolChoice, ToolSpec


def test_strategies_do_only_what_they_name():
    greedy = legacy.Sampling.from_legacy(None).options()
    assert greedy.temperature == 0.0 and greedy.max_tokens is None
    top_p = legacy.Sampling.from_legacy({"strategy": {"type": "top_p", "temperature": 0.7, "top_p": 0.9},
                                         "max_tokens": 12, "stop": ["\n"], "repetition_penalty": 1.1}).options()
    assert (top_p.temperature, top_p.top_p, top_p.top_k, top_p.min_p) == (0.7, 0.9, 0, 0.0)
    assert top_p.max_tokens == 12 and top_p.stop == ["\n"] and top_p.repeat_penalty == 1.1
    top_k = legacy.Sampling.from_legacy({"strategy": {"type": "top_k", "top_k": 5}, "max_tokens": 0}).options()
    assert (top_k.top_k, top_k.top_p, top_k.min_p, top_k.max_tokens) == (5, 1.0, 0.0, None)


def test_top_p_without_temperature_keeps_the_engines_default():
    default = legacy.Sampling.from_legacy({"strategy": {"type": "top_p"}}).options()
    assert default.temperature > 0


@pytest.mark.parametrize(("params", "param"), [
    ({"strategy": {"type": "top_k", "top_k": 0}}, "sampling_params.strategy.top_k"),
    ({"strategy": {"type": "top_p", "temperature": 2.5}}, "sampling_params.strategy.temperature"),
    ({"strategy": {"type": "top_p", "top_p": 0}}, "sampling_params.strategy.top_p"),
    ({"strategy": {"type": "greedy"}, "max_tokens": -3}, "sampling_params.max_tokens"),
    ({"strategy": {"type": "greedy"}, "repetition_penalty": 0}, "sampling_params.repetition_penalty"),
])
def test_bad_sampling_params_name_their_field(params, param):
    with pytest.raises(InvalidValueError) as info:
        legacy.Sampling.from_legacy(params).options()
    assert info.value.field == param


def test_dell_sampling_uses_the_specs_defaults():
    params = dell_models.SamplingParams(strategy="top_p").model_dump(mode="json")
    options = dell.dell_sampling(params).options()
    assert options.temperature == 0.0 and options.top_p == 0.95  # Dell's default temperature is 0
    with pytest.raises(InvalidValueError) as info:
        dell.dell_sampling(dell_models.SamplingParams(strategy="top_k").model_dump(mode="json")).options()
    assert info.value.field == "sampling_params.top_k"


def test_logprobs_count():
    assert legacy.logprobs_count(None) is None
    assert legacy.logprobs_count({}) == 0 and legacy.logprobs_count({"top_k": 3}) == 3
    with pytest.raises(InvalidValueError):
        legacy.logprobs_count({"top_k": 21})


def test_response_formats():
    schema, grammar = legacy.response_format({"type": "json_schema", "json_schema": {"maxLength": 4}})
    assert schema == {"maxLength": 4} and isinstance(schema["maxLength"], int) and grammar is None
    assert legacy.response_format({"type": "grammar", "bnf": {"gbnf": 'root ::= "a"'}}) == (None, 'root ::= "a"')
    _, rules = legacy.response_format({"type": "grammar", "bnf": {"word": "[a-z]+", "root": "word"}})
    assert rules == "root ::= word\nword ::= [a-z]+"
    for bad in ({"word": "[a-z]+"}, {"root": 1}, {}):
        with pytest.raises(InvalidValueError):
            legacy.bnf_grammar(bad)


def test_messages_concatenate_system_turns_and_append_context():
    messages = legacy.legacy_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
         "context": {"type": "text", "text": "ctx"}},
        {"role": "system", "content": "Be kind."},
        {"role": "assistant", "content": "", "stop_reason": "end_of_message",
         "tool_calls": [{"call_id": "c1", "tool_name": "f", "arguments": {"x": 1}},
                        {"call_id": "c2", "tool_name": "g", "arguments": '{"y": 2}'}]},
        {"role": "tool", "call_id": "c1", "content": "done"},
    ])
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Be brief.\nBe kind."), ("user", "a\nb\n\nctx"), ("assistant", ""), ("tool", "done")]
    assert messages[2].tool_calls == (ToolCall("c1", "f", '{"x": 1}'), ToolCall("c2", "g", '{"y": 2}'))
    assert messages[3].tool_call_id == "c1"


def test_images_and_empty_conversations_are_refused():
    with pytest.raises(InvalidValueError) as info:
        legacy.legacy_messages([{"role": "user", "content": {"type": "image", "image": {"data": "eA=="}}}])
    assert info.value.field == "messages[0].content[0]"
    with pytest.raises(InvalidValueError):
        legacy.legacy_messages([])
    with pytest.raises(InvalidValueError) as info:
        dell.dell_messages([{"role": "user", "content": ["a", {"image": "http://x"}]}])
    assert info.value.field == "messages[0].content[1]"
    assert dell.dell_messages([{"role": "user", "content": ["a", "b"]}])[0].content == "a\nb"


def test_tool_definitions_become_json_schemas():
    specs = legacy.legacy_tools([
        {"tool_name": "f", "description": "does f", "parameters": {
            "city": {"param_type": "str", "description": "where"},
            "days": {"param_type": "int", "required": False, "default": 3},
            "tags": {"param_type": "list[str]"}, "odd": {"param_type": "Decimal"}}},
        {"tool_name": "brave_search"},
    ])
    assert specs[0] == ToolSpec("f", "does f", {
        "type": "object", "required": ["city", "tags", "odd"],
        "properties": {"city": {"type": "string", "description": "where"}, "days": {"type": "integer", "default": 3},
                       "tags": {"type": "array"}, "odd": {}}})
    assert specs[1].parameters["properties"] == {"query": {"type": "string", "description": "The search query"}}
    with pytest.raises(InvalidValueError):
        legacy.legacy_tools([{"tool_name": "f"}, {"tool_name": "f"}])


def test_tool_choice_from_config_or_the_deprecated_field():
    tools = [ToolSpec("f"), ToolSpec("g")]
    assert legacy.legacy_tool_choice(None, None, tools) == ToolChoice("auto")
    assert legacy.legacy_tool_choice(None, None, []) == ToolChoice("none")
    assert legacy.legacy_tool_choice("g", None, tools) == ToolChoice("function", "g")
    assert legacy.legacy_tool_choice(None, "required", tools) == ToolChoice("required")
    assert legacy.legacy_tool_choice("none", "none", tools) == ToolChoice("none")
    for config, deprecated, available in (("required", "auto", tools), ("h", None, tools), ("required", None, [])):
        with pytest.raises(InvalidValueError):
            legacy.legacy_tool_choice(config, deprecated, available)


def test_tool_call_arguments_are_an_object_when_the_spec_can_hold_them():
    flat = legacy.tool_call(ToolCall("c", "f", '{"a": 1, "b": [1, "x"], "c": {"d": null}}'))
    assert flat["arguments"] == {"a": 1, "b": [1, "x"], "c": {"d": None}}
    deep = legacy.tool_call(ToolCall("c", "f", '{"a": {"b": {"c": 1}}}'))
    assert deep["arguments"] == deep["arguments_json"] == '{"a": {"b": {"c": 1}}}'
    for body in (flat, deep):
        models.ToolCall.model_validate(body)


def test_stop_reasons():
    assert [legacy.stop_reason(r) for r in ("stop", "length", "tool_calls")] == [
        "end_of_turn", "out_of_tokens", "end_of_message"]


# -- answers, checked against the generated models ------------------------------------------------

LOGPROB = TokenLogprob("hi", -0.5, (("hi", -0.5), ("ho", -1.5)))
CALL = ToolCall("call_1", "f", '{"x": 1}')
EVENTS = [ChoiceStarted(0), TextDelta(0, "hi", (LOGPROB,)), ToolCallDelta(0, 0, CALL),
          ChoiceFinished(0, "tool_calls", 7, 3), Finished(Usage(7, 3))]
GENERATION = Generation([Choice(0, "hi", [CALL], "tool_calls", [LOGPROB], 3)], Usage(7, 3))


def test_chat_chunks_follow_the_stream_schema():
    chunks = [c for e in EVENTS for c in legacy.LegacyChatChunks(logprobs=True).chunks(e)]
    for chunk in chunks:
        models.ChatCompletionResponseStreamChunk.model_validate(chunk)
    assert [c["event"]["event_type"] for c in chunks] == ["start", "progress", "progress", "complete"]
    assert chunks[1]["event"]["logprobs"] == [{"logprobs_by_token": {"hi": -0.5, "ho": -1.5}}]
    assert chunks[2]["event"]["delta"]["tool_call"]["arguments"] == {"x": 1}
    assert chunks[3]["event"]["stop_reason"] == "end_of_message"
    assert {m["metric"]: m["value"] for m in chunks[3]["metrics"]} == {
        "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_whole_answers_follow_the_schemas():
    chat = legacy.chat_response(GENERATION, logprobs=True)
    models.ChatCompletionResponse.model_validate(chat)
    assert chat["completion_message"]["tool_calls"][0]["call_id"] == "call_1"
    completion = legacy.completion_response(GENERATION, logprobs=False)
    models.CompletionResponse.model_validate(completion)
    assert "logprobs" not in completion and completion["stop_reason"] == "end_of_message"
    dell_chat = dell.chat_response(GENERATION, logprobs=True)
    dell_models.ChatCompletionResponse.model_validate(dell_chat)


def test_completion_and_dell_chunks_follow_their_schemas():
    completion = [c for e in EVENTS for c in legacy.LegacyCompletionChunks(logprobs=True).chunks(e)]
    for chunk in completion:
        models.CompletionResponseStreamChunk.model_validate(chunk)
    assert [c["delta"] for c in completion] == ["hi", ""] and completion[-1]["stop_reason"] == "end_of_message"
    dell_chunks = [c for e in EVENTS for c in dell.DellChatChunks(logprobs=True).chunks(e)]
    for chunk in dell_chunks:
        dell_models.ChatCompletionResponseStreamChunk.model_validate(chunk)
    assert [c["event"]["delta"] for c in dell_chunks] == ["", "hi", ""]


def test_dell_openai_bodies_get_their_required_nulls():
    body = dell.openai_body({"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                                          "finish_reason": "stop"}]}, service_tier="default")
    assert body["choices"][0]["logprobs"] is None and body["choices"][0]["message"]["refusal"] is None
    assert body["service_tier"] == "default"
    chunk = dell.openai_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": None,
                                            "logprobs": {"content": []}}]})
    assert chunk["choices"][0]["logprobs"] == {"content": [], "refusal": None} and "service_tier" not in chunk
    json.dumps(body)
