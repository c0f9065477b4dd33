"""Responses API pieces without a model: request reading, output items and stream events
(checked against the spec's own schemas), input-item pages and file-search context."""

from __future__ import annotations

import pytest

from ggstack.core.errors import InvalidValueError, UnknownIdError
from ggstack.http import schemas
from ggstack.http.errors import from_domain
from ggstack.inference.generation import (
    ChoiceFinished,
    ChoiceStarted,
    Finished,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ggstack.inference.messages import Message
from ggstack.inference.openai_responses import file_search, items, store
from ggstack.inference.openai_responses.output import ResponseBuilder
from ggstack.inference.tools import ToolCall, ToolSpec

SPEC = "llama-stack-deprecated"
RESPONSE = schemas.validator(SPEC, "#/components/schemas/OpenAIResponseObject")
WITH_INPUT = schemas.validator(SPEC, "#/components/schemas/OpenAIResponseObjectWithInput")
STREAM_EVENT = schemas.validator(SPEC, "#/components/schemas/OpenAIResponseObjectStream")
HEAD = {"id": "resp_1", "created_at": 1700000000, "model": "tiny", "parallel_tool_calls": True,
        "text": {"format": {"type": "text"}}}
CALL = ToolCall("call_1", "get_weather", '{"city": "Berlin"}')
FOUND = {"type": "file_search_call", "id": "fs_1", "queries": ["code?"], "status": "completed",
         "results": [{"file_id": "file-1", "filename": "a.txt", "score": 0.9, "text": "The code is 7421.",
                      "attributes": {"lang": "en", "year": 2024}}]}


def valid(validator, instance):
    errors = list(validator.iter_errors(instance))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]
    return instance


def run(builder: ResponseBuilder, *events) -> list[dict]:
    """A stream as a client sees it: the opening events, then those of each generation event."""
    out = builder.opening() + [e for event in events for e in builder.events(event)]
    for event in out:
        valid(STREAM_EVENT, event)
    return out


# -- reading the request -----------------------------------------------------------------------


def test_string_input_is_one_user_message_with_an_id():
    [item] = items.input_items("hello")
    assert item["type"] == "message" and item["role"] == "user" and item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "hello"}]


def test_input_items_keep_given_ids_and_get_missing_ones():
    given = [{"type": "message", "role": "user", "content": "a", "id": "mine"},
             {"type": "function_call_output", "call_id": "call_1", "output": "{}"}]
    out = items.input_items(given)
    assert out[0]["id"] == "mine" and out[1]["id"].startswith("fco_")
    assert "id" not in given[1]  # the request's own dicts are not changed


@pytest.mark.parametrize("bad, param", [
    ([{"type": "web_search_call", "id": "w", "status": "completed"}], "input[0]"),
    ([{"type": "message", "role": "user", "content": "ok"},
      {"type": "message", "role": "user", "content": [{"type": "input_image", "detail": "auto"}]}],
     "input[1].content[0]"),
    ([], "input"),
])
def test_input_the_models_cannot_read_is_400_naming_it(bad, param):
    with pytest.raises(InvalidValueError) as error:
        items.input_items(bad)
    assert error.value.field == param


def test_conversation_puts_system_first_and_calls_on_the_assistant_turn():
    conversation = [
        {"type": "message", "role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                                        {"type": "input_text", "text": "In Berlin."}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look.",
                                                              "annotations": []}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": "{}"},
        {"type": "file_search_call", "id": "fs_1", "queries": ["x"], "status": "completed"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    messages = items.conversation_messages(conversation, system="Instructions.")
    assert [m.role for m in messages] == ["system", "system", "user", "assistant", "tool"]
    assert messages[0].content == "Instructions." and messages[2].content == "Weather?\nIn Berlin."
    assert messages[3].content == "Let me look."
    assert [c.id for c in messages[3].tool_calls] == ["call_1", "call_2"]
    assert messages[4] == Message("tool", "sunny", tool_call_id="call_1")


def test_a_call_with_no_assistant_text_before_it_is_its_own_turn():
    [turn] = items.conversation_messages([{"type": "function_call", "call_id": "c", "name": "f",
                                           "arguments": "{}"}])
    assert turn.role == "assistant" and turn.content == "" and turn.tool_calls[0].name == "f"


def test_the_search_query_is_the_last_user_message():
    conversation = [{"type": "message", "role": "user", "content": "first"},
                    {"type": "message", "role": "assistant", "content": "reply"},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": " second "}]}]
    assert items.last_user_text(conversation) == "second"
    assert items.last_user_text([{"type": "function_call_output", "call_id": "c", "output": "x"}]) == ""


def test_tools_split_into_functions_and_file_searches():
    functions, searches = items.request_tools([
        {"type": "function", "name": "f", "description": "does f", "parameters": {"type": "object",
                                                                                  "maxProperties": 3}},
        {"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 3},
    ])
    assert functions == [ToolSpec("f", "does f", {"type": "object", "maxProperties": 3})]
    assert isinstance(functions[0].parameters["maxProperties"], int)
    assert searches == [items.FileSearchTool(("vs_1",), 3)]


@pytest.mark.parametrize("tools, param", [
    ([{"type": "function", "name": "f"}, {"type": "function", "name": "f"}], "tools[1].name"),
    ([{"type": "mcp", "server_label": "s", "server_url": "http://x", "require_approval": "never"}], "tools[0]"),
    ([{"type": "web_search"}], "tools[0]"),
    ([{"type": "file_search", "vector_store_ids": []}], "tools[0].vector_store_ids"),
    ([{"type": "file_search", "vector_store_ids": ["v"], "max_num_results": 0}], "tools[0].max_num_results"),
])
def test_tools_ggstack_cannot_serve_are_400(tools, param):
    with pytest.raises(InvalidValueError) as error:
        items.request_tools(tools)
    assert error.value.field == param


def test_text_format_gives_the_schema_to_enforce():
    assert items.text_format(None) == ({"format": {"type": "text"}}, None)
    assert items.text_format({"format": {"type": "json_object"}})[1] == {"type": "object"}
    shown, schema = items.text_format({"format": {"type": "json_schema", "name": "n", "strict": True,
                                                  "schema": {"type": "string", "maxLength": 8}}})
    assert schema == {"type": "string", "maxLength": 8} and isinstance(schema["maxLength"], int)
    assert shown == {"format": {"type": "json_schema", "name": "n", "strict": True,
                                "schema": {"type": "string", "maxLength": 8}}}


# -- output items and stream events ------------------------------------------------------------


def test_text_answer_streams_in_openai_order_and_ends_completed():
    builder = ResponseBuilder(HEAD)
    events = run(builder, ChoiceStarted(0), TextDelta(0, "Hel"), TextDelta(0, ""), TextDelta(0, "lo"),
                 ChoiceFinished(0, "stop", 5, 2), Finished(Usage(5, 2)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[1]["response"] == events[0]["response"]
    assert [e["sequence_number"] for e in events[1:-1]] == list(range(8))
    events = events[1:]  # the indexes below count from in_progress
    assert events[5]["text"] == "Hello" and events[6]["part"] == {"type": "output_text", "text": "Hello"}
    final = valid(RESPONSE, events[-1]["response"])
    assert final == builder.response()
    assert final["status"] == "completed"
    [message] = final["output"]
    assert message["status"] == "completed" and message["role"] == "assistant"
    assert message["content"] == [{"type": "output_text", "text": "Hello", "annotations": []}]
    assert events[1]["item"]["id"] == message["id"] == events[3]["item_id"]


def test_text_then_calls_then_text_are_separate_items_in_order():
    builder = ResponseBuilder(HEAD)
    second = ToolCall("call_2", "get_weather", '{"city": "Rome"}')
    events = run(builder, ChoiceStarted(0), TextDelta(0, "Checking."), ToolCallDelta(0, 0, CALL),
                 ToolCallDelta(0, 1, second), TextDelta(0, "Done."), ChoiceFinished(0, "tool_calls", 5, 9),
                 Finished(Usage(5, 9)))
    output = valid(RESPONSE, builder.response())["output"]
    assert [i["type"] for i in output] == ["message", "function_call", "function_call", "message"]
    assert output[1] | {"id": "x"} == {"type": "function_call", "id": "x", "call_id": "call_1",
                                        "name": "get_weather", "arguments": '{"city": "Berlin"}',
                                        "status": "completed"}
    assert output[1]["id"].startswith("fc_") and output[2]["call_id"] == "call_2"
    kinds = [e["type"] for e in events]
    first_call = kinds.index("response.function_call_arguments.delta")
    assert kinds[first_call - 2:first_call + 3] == [
        "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done"]
    added = events[first_call - 1]
    assert added["item"]["arguments"] == "" and added["output_index"] == 1
    assert events[first_call]["delta"] == events[first_call + 1]["arguments"] == CALL.arguments


def test_only_calls_means_no_message_item():
    builder = ResponseBuilder(HEAD)
    run(builder, ChoiceStarted(0), ToolCallDelta(0, 0, CALL), ChoiceFinished(0, "tool_calls", 5, 9),
        Finished(Usage(5, 9)))
    assert [i["type"] for i in builder.response()["output"]] == ["function_call"]


def test_a_cut_short_answer_is_incomplete_and_an_empty_one_still_has_a_message():
    cut = ResponseBuilder(HEAD)
    run(cut, ChoiceStarted(0), TextDelta(0, "abc"), ChoiceFinished(0, "length", 5, 3), Finished(Usage(5, 3)))
    assert cut.response()["status"] == "incomplete" and cut.response()["output"][0]["status"] == "incomplete"
    empty = ResponseBuilder(HEAD)
    events = run(empty, ChoiceStarted(0), ChoiceFinished(0, "stop", 5, 0), Finished(Usage(5, 0)))
    assert valid(RESPONSE, empty.response())["output"][0]["content"][0]["text"] == ""
    assert "response.output_text.done" in [e["type"] for e in events]


def test_file_search_calls_come_first_announced_without_results():
    builder = ResponseBuilder(HEAD, prelude=[FOUND])
    events = run(builder, ChoiceStarted(0), TextDelta(0, "7421"), ChoiceFinished(0, "stop", 5, 2),
                 Finished(Usage(5, 2)))
    assert [e["type"] for e in events[:4]] == ["response.created", "response.in_progress",
                                               "response.output_item.added", "response.output_item.done"]
    events = events[1:]  # the indexes below count from in_progress
    assert events[1]["item"]["status"] == "in_progress" and "results" not in events[1]["item"]
    assert events[2]["item"] == FOUND
    output = valid(RESPONSE, builder.response())["output"]
    assert output[0] == FOUND and output[1]["type"] == "message"
    assert events[3]["output_index"] == 1


def test_a_failure_after_the_opening_ends_the_stream_as_failed():
    builder = ResponseBuilder(HEAD)
    events = run(builder, ChoiceStarted(0), TextDelta(0, "Hel"))
    failed = valid(STREAM_EVENT, builder.failed("context_length_exceeded", "the prompt is too long"))
    assert failed["type"] == "response.failed" and failed["sequence_number"] == events[-1]["sequence_number"] + 1
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "context_length_exceeded", "message": "the prompt is too long"}


def test_a_stored_document_is_a_response_with_its_input():
    builder = ResponseBuilder(HEAD)
    run(builder, ChoiceStarted(0), TextDelta(0, "hi"), ChoiceFinished(0, "stop", 1, 1), Finished(Usage(1, 1)))
    conversation = [*items.input_items("hello"), FOUND, *builder.response()["output"]]
    doc = valid(WITH_INPUT, {**builder.response(), "input": conversation})
    assert valid(RESPONSE, store.without_input(doc)) == builder.response()


# -- input item pages --------------------------------------------------------------------------


ITEMS = [{"id": f"i{n}"} for n in range(5)]


def ids(page):
    return [item["id"] for item in page]


def test_input_item_pages_follow_order_and_cursors():
    assert ids(store.page_items(ITEMS)) == ["i4", "i3", "i2", "i1", "i0"]
    assert ids(store.page_items(ITEMS, order="asc", limit=2)) == ["i0", "i1"]
    assert ids(store.page_items(ITEMS, order="asc", after="i1", limit=2)) == ["i2", "i3"]
    assert ids(store.page_items(ITEMS, after="i3")) == ["i2", "i1", "i0"]
    assert ids(store.page_items(ITEMS, order="asc", before="i4", limit=2)) == ["i2", "i3"]
    assert ids(store.page_items(ITEMS, order="asc", after="i0", before="i3")) == ["i1", "i2"]
    assert store.page_items(ITEMS, order="asc", after="i3", before="i1") == []


def test_an_unknown_item_cursor_is_400():
    with pytest.raises(UnknownIdError) as error:
        store.page_items(ITEMS, before="nope")
    assert error.value.field == "before" and from_domain(error.value).message.startswith("Invalid value: ")


# -- file search context -----------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def chars(text: str) -> int:
    """A byte-level tokenizer's count (one token per character of ASCII), as the tiny test model has."""
    return len(text)


def found(*texts: str) -> dict:
    return {**FOUND, "results": [{"file_id": f"file-{n}", "filename": f"{n}.txt", "score": 1 - n / 10, "text": t,
                                  "attributes": {}} for n, t in enumerate(texts)]}


@pytest.mark.anyio
async def test_search_results_go_into_the_context_best_first():
    text = await file_search.context_text([found("alpha", "beta")], context_length=4096, count_tokens=chars)
    assert '"code?"' in text and text.index("[1] 0.txt:\nalpha") < text.index("[2] 1.txt:\nbeta")
    assert await file_search.context_text([found()], context_length=4096, count_tokens=chars) == ""


@pytest.mark.anyio
async def test_search_results_are_cut_to_half_the_context():
    big = "x" * 400
    text = await file_search.context_text([found(big, "small", big)], context_length=600, count_tokens=chars)
    assert len(text) < 320  # half of 600, give or take the joins
    assert "[1] 0.txt" in text and "small" not in text  # the best one is kept (cut), the rest left out
    roomy = await file_search.context_text([found("small", big)], context_length=1000, count_tokens=chars)
    assert "[1] 0.txt:\nsmall" in roomy and "[2]" not in roomy
