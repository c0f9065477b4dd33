"""Shaping: events -> OpenAI bodies and chunks in both dialects, checked against the generated models."""

from __future__ import annotations

import pytest

from generated.models.llama_stack_deprecated import (
    OpenAIChatCompletion,
    OpenAIChatCompletionChunk,
    OpenAIChunkChoice,
    OpenAICompletion,
    OpenAICompletionWithInputMessages,
)
from ggstack.engines.base import TokenEvent
from ggstack.inference.completions import pick_best
from ggstack.inference.generation import (
    Choice,
    ChoiceFinished,
    ChoiceStarted,
    Collector,
    Finished,
    Generation,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ggstack.inference.logprobs import FLOOR, TokenLogprob, from_event, logprobs_by_token
from ggstack.inference.openai_format import (
    OPENAI,
    OpenAIChatChunks,
    OpenAICompletionChunks,
    chat_completion,
    completion,
    spec_dialect,
)
from ggstack.inference.stored_chat import in_dialect
from ggstack.inference.tools import ToolCall

LLAMA_STACK = spec_dialect(OpenAIChatCompletion, OpenAIChunkChoice)
CALL = ToolCall("call_1", "get_time", "{}")
LP = TokenLogprob("Hi", -0.25, (("Hi", -0.25), ("Yo", -2.0)))
EVENTS = [ChoiceStarted(0), TextDelta(0, "Hi", (LP,)), TextDelta(0, " there", None), ChoiceFinished(0, "stop", 7, 2),
          ChoiceStarted(1), ToolCallDelta(1, 0, CALL), ChoiceFinished(1, "tool_calls", 7, 5), Finished(Usage(7, 7))]


def generation() -> Generation:
    collector = Collector()
    for event in EVENTS:
        collector.add(event)
    return collector.result()


def test_collector_builds_whole_choices():
    result = generation()
    assert [c.text for c in result.choices] == ["Hi there", ""]
    assert result.choices[0].logprobs == [LP] and result.choices[1].tool_calls == [CALL]
    assert result.usage.total_tokens == 14


@pytest.mark.parametrize("dialect", [OPENAI, LLAMA_STACK], ids=["openai", "llama-stack"])
def test_chat_completion_body(dialect):
    body = chat_completion(generation(), id="chatcmpl-1", created=1, model="m", logprobs=True, dialect=dialect)
    first, second = body["choices"]
    assert first["message"] == {"role": "assistant", "content": "Hi there"}
    assert first["logprobs"]["content"][0] == {
        "token": "Hi", "bytes": [72, 105], "logprob": -0.25,
        "top_logprobs": [{"token": "Hi", "bytes": [72, 105], "logprob": -0.25},
                         {"token": "Yo", "bytes": [89, 111], "logprob": -2.0}]}
    assert second["message"]["tool_calls"] == [{"id": "call_1", "type": "function",
                                                "function": {"name": "get_time", "arguments": "{}"}}]
    assert second["finish_reason"] == "tool_calls"
    assert ("content" in second["message"]) is dialect.nulls
    assert ("usage" in body) is dialect.usage
    if dialect == LLAMA_STACK:
        OpenAIChatCompletion.model_validate(body)


@pytest.mark.parametrize("dialect", [OPENAI, LLAMA_STACK], ids=["openai", "llama-stack"])
def test_chat_chunks(dialect):
    writer = OpenAIChatChunks(id="c", created=1, model="m", logprobs=True, include_usage=True, dialect=dialect)
    chunks = [c for e in EVENTS for c in writer.chunks(e)]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0]["choices"][0]["finish_reason"] == (None if dialect.nulls else "")
    assert chunks[1]["choices"][0]["logprobs"]["content"][0]["token"] == "Hi"
    assert "logprobs" not in chunks[2]["choices"][0]
    call = next(c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"])
    assert call["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls" and "stop" in finishes
    if dialect.usage:
        assert chunks[-1] == {**chunks[-1], "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 7,
                                                                     "total_tokens": 14}}
    else:
        assert all("usage" not in c for c in chunks)
        for chunk in chunks:
            OpenAIChatCompletionChunk.model_validate(chunk)


def test_completion_body_echo_and_chunks():
    gen = Generation([Choice(0, " Paris", finish_reason="length"), Choice(1, " Rome")], Usage(4, 2))
    body = completion(gen, id="cmpl-1", created=1, model="m", logprobs=False, echo=["Capital:"], n=2,
                      dialect=LLAMA_STACK)
    assert [c["text"] for c in body["choices"]] == ["Capital: Paris", "Capital: Rome"]
    OpenAICompletion.model_validate(body)
    writer = OpenAICompletionChunks(id="c", created=1, model="m", logprobs=False, echo=["Q:"], dialect=LLAMA_STACK)
    chunks = [c for e in [ChoiceStarted(0), TextDelta(0, " A"), ChoiceFinished(0, "stop", 3, 1),
                          Finished(Usage(3, 1))] for c in writer.chunks(e)]
    assert [c["choices"][0]["text"] for c in chunks] == ["Q:", " A", ""]
    for chunk in chunks:
        OpenAICompletion.model_validate(chunk)


def test_stored_documents_are_cut_to_the_dialect():
    full = chat_completion(generation(), id="chatcmpl-1", created=1, model="m", logprobs=False, dialect=OPENAI)
    doc = {**full, "input_messages": [{"role": "user", "content": "hi"}]}
    view = in_dialect(doc, LLAMA_STACK)
    if not LLAMA_STACK.usage:
        assert "usage" not in view
    OpenAICompletionWithInputMessages.model_validate(view)


def test_best_of_keeps_the_likeliest_per_prompt():
    def choice(i, lp):
        return Choice(i, str(lp), logprobs=[TokenLogprob("x", lp)])
    gen = Generation([choice(0, -3.0), choice(1, -1.0), choice(2, -2.0), choice(3, -0.5), choice(4, -9.0),
                      choice(5, -0.1)], Usage(1, 6))
    best = pick_best(gen, n=1, best_of=3)
    assert [(c.index, c.text) for c in best.choices] == [(0, "-1.0"), (1, "-0.1")]


def test_logprobs_are_plain_finite_floats():
    entry = from_event(TokenEvent("a", 1, float("-inf"), [("a", float("-inf")), ("b", -1.0)]))
    assert entry == TokenLogprob("a", FLOOR, (("a", FLOOR), ("b", -1.0)))
    assert from_event(TokenEvent("a", 1)) is None
    assert logprobs_by_token(TokenLogprob("a", -0.1, (("b", -2.0),))) == {"b": -2.0, "a": -0.1}
