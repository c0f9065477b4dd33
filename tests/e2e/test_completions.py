"""OpenAI (raw text) completions through a real server, with the openai SDK and httpx."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.e2e.test_chat_completions import needs_smollm2
from tests.server import http_client, openai_client, served

SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    yield from served(tmp_path_factory.mktemp("completions"), config={"models": models, "default_models": True})


@pytest.fixture
def client(server):
    yield from openai_client(server)


@pytest.fixture
def http(server):
    yield from http_client(server, "/v1/openai/v1")


def stream_events(http: httpx.Client, body: dict) -> list:
    with http.stream("POST", "/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        data = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in data  # Llama Stack streams end with the body (llama-stack-client parses every line)
    return [json.loads(d) for d in data]


def test_a_prompt_is_continued(server, client):
    result = client.completions.create(model="tiny", prompt="Once upon", max_tokens=7, temperature=0)
    assert result.object == "text_completion" and result.id.startswith("cmpl-") and result.model == "tiny"
    (choice,) = result.choices
    assert choice.text and choice.finish_reason == "length" and choice.index == 0
    v1 = openai.OpenAI(base_url=server.url + "/v1", api_key="x").completions.create(
        model="tiny", prompt="Once upon", max_tokens=7, temperature=0)
    assert v1.choices[0].text == choice.text


def test_max_tokens_defaults_to_16(http):
    body = http.post("/completions", json={"model": "tiny", "prompt": "abc", "temperature": 0}).json()
    capped = http.post("/completions", json={"model": "tiny", "prompt": "abc", "temperature": 0,
                                              "max_tokens": 16}).json()
    assert body["choices"][0]["text"] == capped["choices"][0]["text"]
    assert body["choices"][0]["finish_reason"] == "length"


def test_prompt_lists_token_arrays_and_n(client):
    text = client.completions.create(model="tiny", prompt="Hi", max_tokens=5, temperature=0).choices[0].text
    many = client.completions.create(model="tiny", prompt=["Hi", "Bye"], max_tokens=5, n=2, temperature=0)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    assert many.choices[0].text == many.choices[1].text == text
    tokens = [ord(c) for c in "Hi"]  # the tiny vocabulary is byte-level: token id = byte value
    assert client.completions.create(model="tiny", prompt=tokens, max_tokens=5, temperature=0).choices[0].text \
        == client.completions.create(model="tiny", prompt="Hi", max_tokens=5, temperature=0).choices[0].text
    both = client.completions.create(model="tiny", prompt=[tokens, tokens], max_tokens=3, temperature=0)
    assert len(both.choices) == 2 and both.choices[0].text == both.choices[1].text


def test_echo_stop_and_logprobs(client):
    text = client.completions.create(model="tiny", prompt="Start:", max_tokens=20, temperature=0).choices[0].text
    echoed = client.completions.create(model="tiny", prompt="Start:", max_tokens=20, temperature=0, echo=True)
    assert echoed.choices[0].text == "Start:" + text
    stop = text[5:8]
    cut = client.completions.create(model="tiny", prompt="Start:", max_tokens=20, temperature=0, stop=stop)
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"
    scored = client.completions.create(model="tiny", prompt="Start:", max_tokens=4, temperature=0, logprobs=True)
    entries = scored.choices[0].logprobs.content
    assert len(entries) == 4 and all(isinstance(e["logprob"], float) for e in entries)
    assert "".join(e["token"] for e in entries) == scored.choices[0].text


def test_guided_choice_and_best_of(http):
    body = http.post("/completions", json={"model": "tiny", "prompt": "Answer:", "max_tokens": 10, "temperature": 1,
                                           "guided_choice": ["yes", "no", "maybe so"]}).json()
    assert body["choices"][0]["text"] in ("yes", "no", "maybe so") and body["choices"][0]["finish_reason"] == "stop"
    best = http.post("/completions", json={"model": "tiny", "prompt": "Answer:", "max_tokens": 4, "n": 2,
                                           "best_of": 4, "temperature": 2.0, "top_p": 1.0, "seed": 9}).json()
    assert [c["index"] for c in best["choices"]] == [0, 1] and "logprobs" not in best["choices"][0]


def test_stream(http):
    whole = http.post("/completions", json={"model": "tiny", "prompt": "Go", "max_tokens": 6, "temperature": 0,
                                            "echo": True}).json()
    chunks = stream_events(http, {"model": "tiny", "prompt": "Go", "max_tokens": 6, "temperature": 0, "echo": True,
                                  "logprobs": True})
    assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(len((c["choices"][0].get("logprobs") or {}).get("content", [])) for c in chunks) == 6


def test_stream_with_the_sdk(client):
    pieces = list(client.completions.create(model="tiny", prompt=["a", "b"], max_tokens=3, stream=True,
                                            temperature=0))
    assert {p.choices[0].index for p in pieces} == {0, 1}


def test_bad_requests(client, http):
    cases = [
        ({"model": "tiny", "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": "tiny", "prompt": "x", "prompt_logprobs": 1}, "prompt_logprobs"),
        ({"model": "tiny", "prompt": "x", "n": 3, "best_of": 2}, "best_of"),
        ({"model": "tiny", "prompt": "x", "best_of": 2, "stream": True}, "best_of"),
        ({"model": "tiny", "prompt": []}, "prompt"),
        ({"model": "tiny", "prompt": [999999]}, "vocabulary"),
        ({"model": "tiny", "prompt": "x", "guided_choice": []}, "guided_choice"),
        ({"model": "tiny", "prompt": "x" * 600}, "maximum context length is 512"),
        ({"model": "tiny-embed", "prompt": "x"}, "embedding"),
    ]
    for body, words in cases:
        response = http.post("/completions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert words in response.json()["detail"], response.text
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")


def test_an_overflowing_prompt_is_named_prompt(http):
    # The engines' overflow error is about "the prompt"; only chat handlers call that `messages`.
    for stream in (False, True):
        response = http.post("/completions", json={"model": "tiny", "prompt": "x" * 600, "stream": stream})
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]  # a param is named in the detail unless the text names it
        assert "prompt has" in detail and "messages" not in detail, detail


@needs_smollm2
def test_smollm2_completes_a_fact(client):
    result = client.completions.create(model=SMOL, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert "Paris" in result.choices[0].text
