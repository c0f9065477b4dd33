"""Dell Pro AI Studio chat through a real server: /v1/openai/chat/completions (openai SDK and httpx)
and /v1/llamastack/inference/chat-completion (httpx), on a tiny random GGUF.

The server validates every answer and stream event against specs/dell-pro-ai-studio.yaml
(overlaid); each test ends by checking it logged no mismatch. Errors are Dell's errorResponse.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from tests.server import http_client, openai_client, served

HI = [{"role": "user", "content": "hi"}]
LLAMASTACK = "/llamastack/inference/chat-completion"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 2048},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    yield from served(tmp_path_factory.mktemp("dell-chat"), config={"models": models, "max_context_factor": 4})


@pytest.fixture
def http(server):
    yield from http_client(server, "/v1")


@pytest.fixture
def client(server):
    yield from openai_client(server, "/v1/openai")


def stream(http: httpx.Client, path: str, body: dict) -> list:
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]

def assert_same_logprobs(streamed: list[dict], whole: list[dict]) -> None:
    """Same tokens, same logprobs up to float noise (a cached prompt takes another code path)."""
    assert [sorted(t["logprobs_by_token"]) for t in streamed] == [sorted(t["logprobs_by_token"]) for t in whole]
    for a, b in zip(streamed, whole):
        assert a["logprobs_by_token"] == pytest.approx(b["logprobs_by_token"], abs=1e-4)



def llamastack(http: httpx.Client, **body) -> dict:
    response = http.post(LLAMASTACK, json={"model_id": "tiny", "messages": HI, **body})
    assert response.status_code == 200, response.text
    return response.json()


# -- /v1/openai/chat/completions ---------------------------------------------------------------


def test_openai_chat_with_the_sdk(client):
    result = client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, temperature=0)
    again = client.chat.completions.create(model="tiny", messages=HI, max_completion_tokens=6, temperature=0)
    assert result.id.startswith("chatcmpl-") and result.object == "chat.completion" and result.model == "tiny"
    choice = result.choices[0]
    assert choice.finish_reason == "length" and choice.message.role == "assistant"
    assert choice.message.content and choice.message.content == again.choices[0].message.content
    assert result.usage.completion_tokens == 6
    assert result.usage.total_tokens == result.usage.prompt_tokens + 6


def test_openai_chat_body_has_dells_required_nulls(http):
    body = http.post("/openai/chat/completions", json={"model": "tiny", "messages": HI, "max_tokens": 3}).json()
    choice = body["choices"][0]
    assert choice["logprobs"] is None and choice["message"]["refusal"] is None
    assert "service_tier" not in body
    tiered = http.post("/openai/chat/completions", json={"model": "tiny", "messages": HI, "max_tokens": 3,
                                                         "service_tier": "auto", "logprobs": True,
                                                         "top_logprobs": 2, "temperature": 0}).json()
    assert tiered["service_tier"] == "default"
    logprobs = tiered["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None and len(logprobs["content"]) == 3
    assert all(len(entry["top_logprobs"]) == 2 and entry["logprob"] <= 0 for entry in logprobs["content"])
    assert "".join(entry["token"] for entry in logprobs["content"]) == tiered["choices"][0]["message"]["content"]


def test_openai_stream_with_usage(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=HI, max_tokens=5, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    whole = client.chat.completions.create(model="tiny", messages=HI, max_tokens=5, temperature=0)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_stream_logprobs(http):
    chunks = stream(http, "/openai/chat/completions", {"model": "tiny", "messages": HI, "max_tokens": 4,
                                                       "logprobs": True, "temperature": 0})
    entries = [e for c in chunks for e in (c["choices"][0].get("logprobs") or {}).get("content", [])]
    assert len(entries) == 4
    assert all(c["choices"][0]["logprobs"]["refusal"] is None for c in chunks if c["choices"][0].get("logprobs"))


def test_openai_stop_sequences_and_messages(client):
    free = client.chat.completions.create(model="tiny", messages=HI, max_tokens=20, temperature=0)
    text = free.choices[0].message.content
    stop = text[4:7]
    cut = client.chat.completions.create(model="tiny", max_tokens=20, temperature=0, stop=[stop], messages=HI)
    assert cut.choices[0].message.content == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    history = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]}, *HI,
               {"role": "assistant", "content": "hello"}, {"role": "user", "content": "again"}]
    longer = client.chat.completions.create(model="tiny", messages=history, max_tokens=2)
    assert longer.usage.prompt_tokens > free.usage.prompt_tokens


def test_openai_errors_are_dell_error_bodies(client, http):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HI)
    assert "not found" in str(info.value)
    cases = [
        ({"model": "tiny-embed", "messages": HI}, "embedding", "model"),
        ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 3000}]}, "prompt has", "messages"),
        ({"model": "tiny", "messages": HI, "tool_choice": "required"}, "needs tools", "tool_choice"),
        ({"model": "tiny", "messages": HI, "logit_bias": {"5": 1}}, "logit_bias", "logit_bias"),
        ({"model": "tiny", "messages": HI, "top_logprobs": 2}, "top_logprobs", "top_logprobs"),
        ({"model": "tiny", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, "text only", None),
    ]
    for body, words, param in cases:
        response = http.post("/openai/chat/completions", json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()
        assert set(error) <= {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
        assert words in error["message"], error
        if param:
            assert error["param"] == param
    assert http.post("/openai/chat/completions", json=cases[1][0]).json()["code"] == "context_length_exceeded"
    with http.stream("POST", "/openai/chat/completions", json={**cases[1][0], "stream": True}) as response:
        assert response.status_code == 400


# -- /v1/llamastack/inference/chat-completion --------------------------------------------------


def test_llamastack_chat_is_greedy_by_default(http):
    first = llamastack(http, sampling_params={"strategy": "greedy", "max_tokens": 6})
    again = llamastack(http, sampling_params={"strategy": "top_p", "max_tokens": 6})  # temperature defaults to 0
    message = first["completion_message"]
    assert message["role"] == "assistant" and message["tool_calls"] == []
    assert message["stop_reason"] == "out_of_tokens" and message["content"]
    assert again["completion_message"]["content"] == message["content"]
    assert "metrics" not in first


def test_llamastack_sampling_with_temperature_varies(http):
    texts = {llamastack(http, sampling_params={"strategy": "top_k", "top_k": 50, "temperature": 1.5,
                                               "max_tokens": 8})["completion_message"]["content"] for _ in range(4)}
    assert len(texts) > 1


def test_llamastack_stream_has_string_deltas(http):
    request = {"model_id": "tiny", "messages": [{"role": "system", "content": "Be brief."}, *HI],
               "sampling_params": {"strategy": "greedy", "max_tokens": 5}, "logprobs": {"top_k": 2}}
    whole = http.post(LLAMASTACK, json=request).json()
    events = [c["event"] for c in stream(http, LLAMASTACK, request)]
    assert events[0] == {"event_type": "start", "delta": ""}
    assert {e["event_type"] for e in events[1:-1]} == {"progress"}
    assert events[-1] == {"event_type": "complete", "delta": "", "stop_reason": "out_of_tokens"}
    assert "".join(e["delta"] for e in events) == whole["completion_message"]["content"]
    assert_same_logprobs([t for e in events for t in e.get("logprobs", [])], whole["logprobs"])
    assert len(whole["logprobs"]) == 5


def test_llamastack_json_schema_and_grammar_are_enforced(http):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
              "required": ["n", "ok"], "additionalProperties": False}
    body = llamastack(http, sampling_params={"strategy": "greedy", "max_tokens": 60},
                      response_format={"type": "json_schema", "json_schema": schema})
    assert body["completion_message"]["stop_reason"] == "end_of_turn"
    jsonschema.validate(json.loads(body["completion_message"]["content"]), schema)
    chosen = llamastack(http, sampling_params={"strategy": "greedy", "max_tokens": 20},
                        response_format={"type": "grammar", "bnf": {"root": '"red" | "green" | "blue"'}})
    assert chosen["completion_message"]["content"] in ("red", "green", "blue")


def test_llamastack_history_with_tool_calls_and_context(http):
    messages = [{"role": "user", "content": ["what is", "the weather"], "context": "It is sunny."},
                {"role": "assistant", "content": "", "stop_reason": "end_of_message",
                 "tool_calls": [{"call_id": "c1", "tool_name": "brave_search", "arguments": {"query": "weather"}}]},
                {"role": "user", "content": "so?"}]
    body = llamastack(http, messages=messages, sampling_params={"strategy": "greedy", "max_tokens": 3})
    assert body["completion_message"]["content"] and body["completion_message"]["stop_reason"] == "out_of_tokens"


def test_llamastack_errors_are_dell_error_bodies(http):
    unknown = http.post(LLAMASTACK, json={"model_id": "no-such-model", "messages": HI},
                        headers={"X-LlamaStack-ProviderData": "{}"})
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["message"] and unknown.json()["param"] == "model_id"
    cases = [
        ({"model_id": "tiny-embed", "messages": HI}, "embedding"),
        ({"model_id": "tiny", "messages": [{"role": "user", "content": "x" * 3000}]}, "prompt has"),
        ({"model_id": "tiny", "messages": [{"role": "user", "content": {"image": "http://x/y.png"}}]}, "text only"),
        ({"model_id": "tiny", "messages": HI, "sampling_params": {"strategy": "top_k"}}, "top_k"),
        ({"model_id": "tiny", "messages": HI, "sampling_params": {"strategy": "greedy", "repetition_penalty": 0}},
         "repetition_penalty"),
        ({"model_id": "tiny", "messages": HI, "logprobs": {"top_k": 99}}, "logprobs.top_k"),
    ]
    for body, words in cases:
        response = http.post(LLAMASTACK, json=body)
        assert response.status_code == 400, (body, response.text)
        assert words in response.json()["message"], response.text
    with http.stream("POST", LLAMASTACK, json={**cases[1][0], "stream": True}) as response:
        assert response.status_code == 400
