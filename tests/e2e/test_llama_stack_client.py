"""Every resource of llama-stack-client 0.2.23 that has a route here, through the client itself,
streams included, against a real server on the tiny GGUFs; and the openai SDK on the same
OpenAI-shaped routes where the two clients send different things.

The server validates every answer and stream event against its spec; each test ends by
checking it logged no mismatch. Generation is kept to a few tokens.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest
from llama_stack_client import BadRequestError, NotFoundError

from tests.server import openai_client, served, stack_client

FLAG = {"format": {"type": "json_schema", "name": "flag", "strict": True, "schema": {
    "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}}}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf, tiny_embed_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm"},
              {"identifier": "tiny-embed", "path": str(tiny_embed_gguf), "model_type": "embedding"}]
    config = {"models": models, "model_dirs": [str(tiny_chat_gguf.parent)]}
    yield from served(tmp_path_factory.mktemp("llama-stack-client"), config=config)


@pytest.fixture
def client(server):
    yield from stack_client(server, timeout=120)


@pytest.fixture
def oai(server):
    yield from openai_client(server, timeout=120)


# -- streams: no [DONE] in the Llama Stack families ----------------------------------------------


def test_chat_completion_streams_through_both_clients(client, oai):
    chunks = list(client.chat.completions.create(model="tiny", messages=HI, max_tokens=3, stream=True))
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    sdk = list(oai.chat.completions.create(model="tiny", messages=HI, max_tokens=3, stream=True))
    assert sdk[-1].choices[0].finish_reason == "length"


def test_text_completion_streams_through_both_clients(client, oai):
    chunks = list(client.completions.create(model="tiny", prompt="Once", max_tokens=3, stream=True))
    assert chunks and chunks[-1].choices[0].finish_reason == "length"
    assert len(list(oai.completions.create(model="tiny", prompt="Once", max_tokens=3, stream=True))) == len(chunks)


def test_legacy_inference_streams(client):
    chunks = list(client.inference.chat_completion(model_id="tiny", messages=HI, stream=True,
                                                   sampling_params={"max_tokens": 3}))
    assert chunks[0].event.event_type == "start" and chunks[-1].event.event_type == "complete"
    chunks = list(client.inference.completion(model_id="tiny", content="Once", stream=True,
                                              sampling_params={"max_tokens": 3}))
    assert chunks[-1].stop_reason == "out_of_tokens"
    top_p = {"max_tokens": 2, "strategy": {"type": "top_p", "temperature": 0.5, "top_p": 0.9}}
    assert client.inference.completion(model_id="tiny", content="x", sampling_params=top_p).stop_reason


def test_responses_stream_opens_with_created_and_in_progress(client, oai, server):
    events = list(client.responses.create(model="tiny", input="hi", text=FLAG, stream=True))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[0].response.status == "in_progress" and events[-1].type == "response.completed"
    sdk = list(oai.responses.create(model="tiny", input="hi", text=FLAG, stream=True))
    assert [e.type for e in sdk[:2]] == ["response.created", "response.in_progress"]
    assert sdk[-1].response.status == "completed"


def test_a_failure_after_the_stream_opened_is_a_failed_event(oai):
    bad = {"format": {"type": "json_schema", "name": "x", "schema": {"type": "foo"}}}
    events = list(oai.responses.create(model="tiny", input="hi", text=bad, stream=True))
    assert [e.type for e in events] == ["response.created", "response.in_progress", "response.failed"]
    failed = events[-1].response
    assert failed.status == "failed" and "text.format" in failed.error.message


# -- Responses API input forms -------------------------------------------------------------------


def test_every_input_item_form_is_accepted(client, oai):
    forms = [
        [{"role": "user", "content": "hi"}],  # the SDK's easy message: no type
        [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Answer."},
         {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
         {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "more",
                                                               "annotations": []}]},
         {"role": "user", "content": "again"}],
        [{"role": "user", "content": "weather?"},
         {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
         {"type": "function_call_output", "call_id": "c1", "output": "sunny"}],
    ]
    for form in forms:
        assert oai.responses.create(model="tiny", input=form, text=FLAG).status == "completed"
        assert client.responses.create(model="tiny", input=form, text=FLAG).status == "completed"


def test_an_image_part_is_valid_but_a_text_model_says_it_cannot_see(oai):
    image = {"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                         {"type": "input_image", "image_url": "http://example.com/x.png"}]}
    with pytest.raises(openai.BadRequestError) as info:
        oai.responses.create(model="tiny", input=[image])
    assert "text" in info.value.response.json()["detail"]


def test_explicit_nulls_are_not_given(server, client):
    first = client.responses.create(model="tiny", input="hi", text=FLAG, previous_response_id=None)
    with httpx.Client(base_url=server.url, timeout=120) as http:
        body = {"model": "tiny", "input": "hi", "text": FLAG, "previous_response_id": None, "instructions": None,
                "temperature": None, "store": None, "tools": None, "stream": None}
        response = http.post("/v1/openai/v1/responses", json=body)
        assert response.status_code == 200, response.text
        chat = http.post("/v1/openai/v1/chat/completions", json={
            "model": "tiny", "messages": HI, "max_tokens": 2, "temperature": None, "stop": None, "tools": None,
            "response_format": None, "stream_options": None, "user": None})
        assert chat.status_code == 200, chat.text
    assert client.responses.retrieve(first.id).id == first.id


# -- OpenAI-shaped resources ---------------------------------------------------------------------


def test_chat_completions_are_stored_with_usage(client):
    made = client.chat.completions.create(model="tiny", messages=HI, max_tokens=2)
    # 0.2.23's client models have no `usage`; it keeps the field as the dict the server sent
    assert made.usage["completion_tokens"] == 2
    stored = client.chat.completions.retrieve(made.id)
    assert stored.id == made.id and stored.input_messages[0].content == "hi"
    assert stored.usage["total_tokens"] == made.usage["total_tokens"]
    assert made.id in {c.id for c in client.chat.completions.list(limit=50).data}


def test_completions_take_an_integer_logprobs(client, oai):
    result = oai.completions.create(model="tiny", prompt="Once", max_tokens=2, logprobs=3)
    # the spec's logprobs are chat-shaped (`content`), which the SDK keeps as plain dicts
    entries = result.choices[0].logprobs.content
    assert len(entries) == 2 and all(len(entry["top_logprobs"]) == 3 for entry in entries)
    assert client.completions.create(model="tiny", prompt="Once", max_tokens=2, logprobs=True).choices[0].logprobs
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="tiny", prompt="Once", max_tokens=2, logprobs=6)


def test_embeddings_models_and_inspect(client):
    vectors = client.embeddings.create(model="tiny-embed", input=["a", "b"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 32
    assert {"tiny", "tiny-embed"} <= {m.identifier for m in client.models.list()}
    path = client.models.retrieve("tiny").provider_resource_id
    client.models.register(model_id="tiny-again", provider_model_id=path, model_type="llm")
    assert "tiny-again" in {m.id for m in client.models.openai.list()}
    client.models.unregister("tiny-again")
    assert "tiny-again" not in {m.identifier for m in client.models.list()}
    assert client.models.retrieve("tiny").model_type == "llm"
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")
    assert client.inspect.health().status == "OK" and client.inspect.version().version
    assert any(r.route == "/v1/openai/v1/responses" for r in client.routes.list())
    providers = client.providers.list()
    assert providers and client.providers.retrieve(providers[0].provider_id).provider_id == providers[0].provider_id


def test_files_and_vector_stores(client):
    file = client.files.create(file=("notes.txt", b"The vault code is 7421."), purpose="assistants")
    assert client.files.retrieve(file.id).filename == "notes.txt"
    assert client.files.content(file.id) == "The vault code is 7421."
    assert file.id in {f.id for f in client.files.list()}
    store = client.vector_stores.create(name="kb", file_ids=[file.id, "file-missing"])
    assert (store.file_counts.completed, store.file_counts.failed) == (1, 1)
    assert client.vector_stores.retrieve(store.id).name == "kb"
    assert client.vector_stores.update(store.id, name="kb2").name == "kb2"
    assert store.id in {s.id for s in client.vector_stores.list()}
    hits = client.vector_stores.search(vector_store_id=store.id, query="vault code", search_mode="keyword")
    assert hits.data and hits.data[0].file_id == file.id
    files = {f.id: f.status for f in client.vector_stores.files.list(vector_store_id=store.id)}
    assert files == {file.id: "completed", "file-missing": "failed"}
    attached = client.vector_stores.files.retrieve(vector_store_id=store.id, file_id=file.id)
    assert attached.status == "completed"
    updated = client.vector_stores.files.update(vector_store_id=store.id, file_id=file.id, attributes={"k": "v"})
    assert updated.attributes == {"k": "v"}
    content = client.vector_stores.files.content(vector_store_id=store.id, file_id=file.id)
    assert "7421" in "".join(part.text for part in content.content)
    assert client.vector_stores.files.delete(vector_store_id=store.id, file_id="file-missing").deleted
    assert client.vector_stores.delete(store.id).deleted
    assert client.files.delete(file.id).deleted
    with pytest.raises(BadRequestError):
        client.vector_stores.retrieve(store.id)


def test_responses_are_kept_listed_and_deleted(client):
    made = client.responses.create(model="tiny", input=[{"role": "user", "content": "hi"}], text=FLAG)
    assert json.loads(made.output_text) in ({"ok": True}, {"ok": False})
    assert client.responses.retrieve(made.id).id == made.id
    assert made.id in {r.id for r in client.responses.list(limit=50).data}
    items = client.responses.input_items.list(made.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]
    assert client.responses.delete(made.id) is None or True
    with pytest.raises(BadRequestError):
        client.responses.retrieve(made.id)


def test_datasets_benchmarks_and_telemetry(client):
    dataset = client.datasets.register(purpose="eval/messages-answer", source={
        "type": "rows", "rows": [{"messages": [{"role": "user", "content": "hi"}], "answer": "hello"}]},
        dataset_id="ds1")
    assert client.datasets.retrieve("ds1").identifier == dataset.identifier == "ds1"
    client.datasets.appendrows("ds1", rows=[{"messages": [], "answer": "x"}])
    assert len(client.datasets.iterrows("ds1").data) == 2
    assert "ds1" in {d.identifier for d in client.datasets.list()}
    client.benchmarks.register(benchmark_id="b1", dataset_id="ds1", scoring_functions=["basic::equality"])
    assert client.benchmarks.retrieve("b1").dataset_id == "ds1"
    assert "b1" in {b.identifier for b in client.benchmarks.list()}
    client.datasets.unregister("ds1")
    with pytest.raises((NotFoundError, BadRequestError)):
        client.datasets.retrieve("ds1")
    traces = client.telemetry.query_traces(limit=5)
    assert traces
    trace = client.telemetry.get_trace(traces[0].trace_id)
    assert trace.root_span_id
    span = client.telemetry.get_span(trace_id=trace.trace_id, span_id=trace.root_span_id)
    assert span.span_id == trace.root_span_id
    assert client.telemetry.get_span_tree(trace.root_span_id)
    assert client.telemetry.query_spans(attribute_filters=[], attributes_to_return=["__root__"]) is not None
    assert client.telemetry.query_metrics("prompt_tokens", query_type="range", start_time=0) is not None
    client.datasets.register(purpose="eval/messages-answer", source={"type": "rows", "rows": []},
                             dataset_id="spans")
    client.telemetry.save_spans_to_dataset(attribute_filters=[], attributes_to_save=["__location__"],
                                           dataset_id="spans")
    assert client.datasets.iterrows("spans").data


def test_the_stable_paths_take_the_same_fixes(server):
    """/v1/X is served by the stable document; its overlay carries the same client fixes."""
    stable = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    events = list(stable.responses.create(model="tiny", input=[{"role": "user", "content": "hi"}], text=FLAG,
                                          stream=True))
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    result = stable.completions.create(model="tiny", prompt="Once", max_tokens=2, logprobs=2)
    assert all(len(entry["top_logprobs"]) == 2 for entry in result.choices[0].logprobs.content)
    chunks = list(stable.chat.completions.create(model="tiny", messages=HI, max_tokens=2, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    stored = stable.chat.completions.retrieve(chunks[0].id)
    assert stored.usage is not None and stored.usage.completion_tokens == 2
    assert server.mismatches() == []


# -- the legacy embeddings route (client.inference.embeddings) -------------------------------------


def legacy_embeddings(client, **kwargs) -> list[list[float]]:
    with pytest.deprecated_call():  # the client marks it deprecated; the reference still serves it
        return client.inference.embeddings(model_id="tiny-embed", **kwargs).embeddings


def test_legacy_embeddings_are_the_openai_routes_vectors(client):
    texts = ["hello world", "the cat sat on the mat"]
    openai_route = [d.embedding for d in client.embeddings.create(model="tiny-embed", input=texts).data]
    assert legacy_embeddings(client, contents=texts) == openai_route
    items = [{"type": "text", "text": text} for text in texts]
    assert legacy_embeddings(client, contents=items, task_type="query") == openai_route
    short = legacy_embeddings(client, contents=texts, output_dimension=8)
    for vector, full in zip(short, openai_route, strict=True):
        head = np.asarray(full[:8])
        assert np.allclose(vector, head / np.linalg.norm(head), atol=1e-6)


def test_legacy_embeddings_truncate_as_asked(server, client, tiny_embed_gguf):
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(tiny_embed_gguf), vocab_only=True, verbose=False)
    text = "the cat " * 200 + "hello world " * 200  # 800 words: more than the model's 512 tokens
    full = vocab.tokenize(text.encode(), add_bos=True, special=False)  # [CLS] ... [SEP]
    with pytest.raises(BadRequestError, match="maximum context length of 512 tokens"):
        legacy_embeddings(client, contents=[text])
    for side, kept in (("end", full[:511] + full[-1:]), ("start", full[:1] + full[-511:])):
        expected = httpx.post(server.url + "/v1/embeddings", timeout=60,
                              json={"model": "tiny-embed", "input": kept}).json()["data"][0]["embedding"]
        assert legacy_embeddings(client, contents=[text], text_truncation=side) == [expected]
    assert legacy_embeddings(client, contents=[text], text_truncation="start") != legacy_embeddings(
        client, contents=[text], text_truncation="end")
    assert legacy_embeddings(client, contents=["hello"], text_truncation="end") == legacy_embeddings(
        client, contents=["hello"])


def test_legacy_embeddings_refuse_images_and_unknown_models(client):
    image = {"type": "image", "image": {"url": {"uri": "https://example.com/a.png"}}}
    with pytest.raises(BadRequestError, match=r"contents\[1\] is an image"):
        legacy_embeddings(client, contents=[{"type": "text", "text": "hi"}, image])
    with pytest.raises(NotFoundError), pytest.deprecated_call():
        client.inference.embeddings(model_id="no-such-model", contents=["hi"])
    with pytest.raises(BadRequestError), pytest.deprecated_call():
        client.inference.embeddings(model_id="tiny", contents=["hi"])
