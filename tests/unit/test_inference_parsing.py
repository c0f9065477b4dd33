"""Output parsers: tool calls read back from model text, whole or streamed in arbitrary pieces."""

from __future__ import annotations

import json

import pytest

from ggstack.inference.logprobs import TokenLogprob
from ggstack.inference.parsing import Call, ForcedCallParser, PlainParser, Text, ToolCallParser
from ggstack.inference.tools import ToolSpec

TOOLS = [ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}),
         ToolSpec("get_time")]


def run(parser, pieces: list[str]) -> tuple[str, list[tuple[str, dict]]]:
    """Feed `pieces` one by one; return the answer text and the calls (name, arguments)."""
    out = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    out.extend(parser.finish())
    text = "".join(p.text for p in out if isinstance(p, Text))
    calls = [(p.call.name, json.loads(p.call.arguments)) for p in out if isinstance(p, Call)]
    return text, calls


def chars(text: str) -> list[str]:
    return list(text)


@pytest.mark.parametrize("split", [lambda s: [s], chars], ids=["whole", "char-by-char"])
class TestToolCallParser:
    def test_plain_text_is_the_answer(self, split):
        assert run(ToolCallParser(TOOLS), split("It is sunny in Paris.")) == ("It is sunny in Paris.", [])

    def test_hermes_call(self, split):
        text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        assert run(ToolCallParser(TOOLS), split(text)) == ("Let me check.\n", [("get_weather", {"city": "Paris"})])

    def test_two_calls_and_no_closing_tag_on_the_last(self, split):
        text = ('<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n'
                '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}')
        assert run(ToolCallParser(TOOLS), split(text)) == (
            "", [("get_time", {}), ("get_weather", {"city": "Oslo"})])

    def test_bare_json_call_and_llama_parameters_key(self, split):
        text = ' {"name": "get_weather", "parameters": {"city": "Rome"}}'
        assert run(ToolCallParser(TOOLS), split(text)) == ("", [("get_weather", {"city": "Rome"})])

    def test_fenced_list_of_calls(self, split):
        text = '```json\n[{"name": "get_time", "arguments": "{}"}]\n```'
        assert run(ToolCallParser(TOOLS), split(text)) == ("", [("get_time", {})])

    def test_json_that_is_not_a_call_is_the_answer(self, split):
        text = '{"city": "Paris", "temp": 21}'
        assert run(ToolCallParser(TOOLS), split(text)) == (text, [])

    def test_unknown_function_in_tags_stays_text(self, split):
        text = 'a <tool_call>{"name": "launch", "arguments": {}}</tool_call> b'
        assert run(ToolCallParser(TOOLS), split(text)) == (text, [])

    def test_text_that_only_looks_like_a_tag_start(self, split):
        assert run(ToolCallParser(TOOLS), split("x < y and <tool")) == ("x < y and <tool", [])


def test_tool_call_parser_releases_text_before_the_end():
    parser = ToolCallParser(TOOLS)
    assert [p.text for p in parser.feed("Hello")] == ["Hello"]
    assert parser.feed(" <tool") == [Text(" ")]  # "<tool" may open a tag: held
    assert parser.feed("box>") == [Text("<toolbox>")]


def test_logprobs_follow_text_and_are_dropped_with_calls():
    parser = ToolCallParser(TOOLS)
    lp = [TokenLogprob(t, -0.5) for t in ("Hi", "<tool_call>")]
    out = parser.feed("Hi", [lp[0]]) + parser.feed('<tool_call>{"name": "get_time"}', [lp[1]]) + parser.finish()
    assert out[0] == Text("Hi", (lp[0],))
    assert isinstance(out[1], Call) and out[1].call.name == "get_time"


def test_forced_parser_reads_object_or_array_and_keeps_cut_output_as_text():
    assert run(ForcedCallParser(TOOLS), ['{"name": "get_time", ', '"arguments": {}}']) == ("", [("get_time", {})])
    assert run(ForcedCallParser(TOOLS), ['[{"name": "get_time", "arguments": {}},',
                                         '{"name": "get_time", "arguments": {}}]'])[1] == [("get_time", {})] * 2
    assert run(ForcedCallParser(TOOLS), ['{"name": "get_weather", "argu']) == ('{"name": "get_weather", "argu', [])


def test_plain_parser_passes_everything_through():
    assert run(PlainParser(), ['<tool_call>{"name": "get_time"}</tool_call>']) == (
        '<tool_call>{"name": "get_time"}</tool_call>', [])


def test_each_call_gets_its_own_id():
    parser = ToolCallParser(TOOLS)
    pieces = parser.feed('[{"name": "get_time"}, {"name": "get_time"}]') + parser.finish()
    ids = [p.call.id for p in pieces]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
