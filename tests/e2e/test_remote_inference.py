"""A remote inference provider end to end: a second ggstack process plays the remote
OpenAI-compatible server, and the front server serves its models as its own, through the
openai SDK, llama-stack-client and httpx, for every API family.

Two more remotes are small real HTTP servers in this process: one that answers every request
429 (an overloaded vLLM), one that accepts connections and never answers (a stalled box).
The last test kills the remote ggstack (503 naming the provider) and starts it again.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from llama_stack_client import LlamaStackClient
from llama_stack_client import NotFoundError as LlamaStackNotFound

from tests.server import Server

HI = [{"role": "user", "content": "hi"}]
GREEDY = {"temperature": 0, "seed": 7, "max_tokens": 4}
FLAG_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
               "additionalProperties": False}
UNIT_TOOL = {"type": "function", "function": {
    "name": "set_unit", "description": "Choose the temperature unit",
    "parameters": {"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["unit"], "additionalProperties": False}}}


class _Busy(BaseHTTPRequestHandler):
    """An overloaded remote: lists one model, answers every request 429 with Retry-After."""

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "busy-llm", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._send(429, {"error": {"message": "too many requests", "type": "rate_limit_error"}}, retry_after="7")

    def _send(self, status: int, body: dict, retry_after: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        if retry_after:
            self.send_header("retry-after", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def busy_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stalled_url() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.fixture(scope="module")
def remote(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    # the tiny model is trained on 512 positions; tool instructions need more
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm", "context_length": 2048},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    server = Server(tmp_path_factory.mktemp("remote"), config={"models": models, "max_context_factor": 4}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory, remote, busy_url, stalled_url):
    providers = [
        {"provider_id": "gpu-box", "provider_type": "remote::openai-compatible", "base_url": remote.url + "/v1",
         "timeout_seconds": 60, "retries": 1},
        {"provider_id": "busy-box", "provider_type": "remote::vllm", "base_url": busy_url, "retries": 0},
        {"provider_id": "stalled-box", "base_url": stalled_url, "timeout_seconds": 0.5, "retries": 0,
         "models": [{"identifier": "stalled-llm", "provider_model_id": "whatever"}]},
    ]
    server = Server(tmp_path_factory.mktemp("front"), config={"inference_providers": providers}).start()
    yield server
    server.stop()


@pytest.fixture
def oai(front):
    yield openai.OpenAI(base_url=front.url + "/v1", api_key="x", max_retries=0, timeout=120)
    assert front.mismatches() == []


@pytest.fixture
def direct(remote):
    return openai.OpenAI(base_url=remote.url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture
def client(front):
    yield LlamaStackClient(base_url=front.url, max_retries=0, timeout=120)
    assert front.mismatches() == []


def test_remote_models_are_listed_by_every_family_with_their_provider(client, front):
    native = {m.identifier: m for m in client.models.list()}
    assert native["tiny"].provider_id == "gpu-box" and native["tiny"].model_type == "llm"
    assert native["tiny-embed"].model_type == "embedding" and native["tiny-embed"].metadata["embedding_dimension"] == 32
    assert native["busy-llm"].provider_id == "busy-box" and native["stalled-llm"].provider_resource_id == "whatever"
    legacy_openai = openai.OpenAI(base_url=front.url + "/v1/openai/v1", api_key="x", max_retries=0)
    assert {"tiny", "tiny-embed"} <= {m.id for m in legacy_openai.models.list()}
    dell = httpx.get(f"{front.url}/v1/openai/models").json()
    assert {"tiny", "tiny-embed"} <= {m["id"] for m in dell["data"]}


def test_chat_answers_as_the_remote_does(oai, direct):
    ours = oai.chat.completions.create(model="tiny", messages=HI, **GREEDY)
    theirs = direct.chat.completions.create(model="tiny", messages=HI, **GREEDY)
    assert ours.choices[0].message.content == theirs.choices[0].message.content
    assert ours.choices[0].finish_reason == theirs.choices[0].finish_reason == "length"
    assert ours.usage.completion_tokens == 4 and ours.usage.prompt_tokens == theirs.usage.prompt_tokens > 0


def test_chat_stream_passes_the_deltas_through(oai, direct):
    chunks = list(oai.chat.completions.create(model="tiny", messages=HI, stream=True,
                                              stream_options={"include_usage": True}, **GREEDY))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = direct.chat.completions.create(model="tiny", messages=HI, **GREEDY)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage.completion_tokens == 4


def test_chat_forced_tool_call_and_json_schema(oai):
    answer = oai.chat.completions.create(model="tiny", messages=HI, tools=[UNIT_TOOL], tool_choice="required",
                                         max_tokens=60, temperature=0)
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "set_unit" and json.loads(call.function.arguments)["unit"] in ("celsius", "fahrenheit")
    assert answer.choices[0].finish_reason == "tool_calls"
    fmt = {"type": "json_schema", "json_schema": {"name": "flag", "schema": FLAG_SCHEMA}}
    answer = oai.chat.completions.create(model="tiny", messages=HI, response_format=fmt, max_tokens=30, temperature=0)
    assert isinstance(json.loads(answer.choices[0].message.content)["ok"], bool)


def test_completions_whole_and_streamed(oai, direct):
    ours = oai.completions.create(model="tiny", prompt="Once", **GREEDY)
    theirs = direct.completions.create(model="tiny", prompt="Once", **GREEDY)
    assert ours.choices[0].text == theirs.choices[0].text and ours.choices[0].finish_reason == "length"
    chunks = list(oai.completions.create(model="tiny", prompt="Once", stream=True, **GREEDY))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == theirs.choices[0].text


def test_embeddings_match_the_remote(oai, direct):
    ours = oai.embeddings.create(model="tiny-embed", input=["red apple", "green pear"])
    theirs = direct.embeddings.create(model="tiny-embed", input=["red apple", "green pear"])
    assert len(ours.data) == 2 and len(ours.data[0].embedding) == 32
    for a, b in zip(ours.data, theirs.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)


def test_responses_legacy_and_dell_run_on_the_remote_model(client, front):
    response = client.responses.create(model="tiny", input="hi", temperature=0,
                                       text={"format": {"type": "json_schema", "name": "flag", "schema": FLAG_SCHEMA}})
    assert response.status == "completed" and isinstance(json.loads(response.output_text)["ok"], bool)
    legacy = client.inference.chat_completion(model_id="tiny", messages=HI, sampling_params={"max_tokens": 3})
    assert legacy.completion_message.stop_reason == "out_of_tokens"
    dell = httpx.post(f"{front.url}/v1/openai/chat/completions", timeout=60,
                      json={"model": "tiny", "messages": HI, "max_tokens": 3}).json()
    assert dell["choices"][0]["finish_reason"] == "length"


def test_agent_turn_calls_a_client_tool_on_the_remote_model(client):
    # a boolean argument: the tiny random model's forced call is bounded (a string could run on)
    weather = {"name": "get_weather", "description": "Get the current weather in Oslo",
               "parameters": [{"name": "metric", "parameter_type": "boolean", "description": "Celsius?",
                               "required": True}]}
    agent = client.agents.create(agent_config={
        "model": "tiny", "instructions": "You are a helpful assistant.", "max_infer_iters": 2,
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 60}, "client_tools": [weather],
        "tool_config": {"tool_choice": "get_weather"}})
    session = client.agents.session.create(agent.agent_id, session_name="remote")
    chunks = list(client.agents.turn.create(session.session_id, agent_id=agent.agent_id, stream=True,
                                            messages=[{"role": "user", "content": "Weather in Oslo?"}]))
    assert chunks[-1].event.payload.event_type == "turn_awaiting_input"
    call = chunks[-1].event.payload.turn.output_message.tool_calls[0]
    assert call.tool_name == "get_weather"


def test_register_and_unregister_a_remote_model_at_run_time(client, oai):
    model = client.models.register(model_id="tiny-alias", provider_id="gpu-box", provider_model_id="tiny",
                                   model_type="llm")
    assert model.provider_id == "gpu-box" and model.provider_resource_id == "tiny"
    answer = oai.chat.completions.create(model="tiny-alias", messages=HI, max_tokens=2)
    assert answer.choices[0].finish_reason == "length"
    client.models.unregister("tiny-alias")
    with pytest.raises(LlamaStackNotFound):
        client.models.retrieve("tiny-alias")


def test_remote_429_and_timeout_keep_their_meaning(oai, front):
    with pytest.raises(openai.RateLimitError) as busy:
        oai.chat.completions.create(model="busy-llm", messages=HI, max_tokens=2)
    assert "busy-box" in busy.value.response.json()["detail"] and busy.value.response.headers["retry-after"] == "7"
    stalled = httpx.post(f"{front.url}/v1/chat/completions", timeout=60,
                         json={"model": "stalled-llm", "messages": HI, "max_tokens": 2})
    assert stalled.status_code == 504 and "stalled-box" in stalled.json()["detail"]


def test_provider_health_reports_reachability(client, front):
    assert client.providers.retrieve("gpu-box").health["status"] == "OK"
    # remote models in use have no worker thread here, and the server's own health says so
    assert httpx.get(f"{front.url}/v1/health").status_code == 200
    assert client.providers.retrieve("stalled-box").health["status"] == "Error"


def test_killed_remote_is_503_naming_it_and_recovers(front, remote, client):
    remote.kill()
    down = httpx.post(f"{front.url}/v1/chat/completions", timeout=60,
                      json={"model": "tiny", "messages": HI, "max_tokens": 2})
    assert down.status_code == 503 and "gpu-box" in down.json()["detail"]
    health = client.providers.retrieve("gpu-box").health
    assert health["status"] == "Error" and "gpu-box" in health["message"]
    remote.start()  # same port, same data dir
    up = httpx.post(f"{front.url}/v1/chat/completions", timeout=60,
                    json={"model": "tiny", "messages": HI, "max_tokens": 2})
    assert up.status_code == 200 and up.json()["choices"][0]["finish_reason"] == "length"
