"""Telemetry: every API call becomes a span the Telemetry API can find, filter and count."""

from __future__ import annotations

import time

import httpx
import pytest
from llama_stack_client import LlamaStackClient

from tests.server import Server, served

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_embed_gguf) -> Server:
    config = {"models": [{"identifier": "emb", "path": str(tiny_embed_gguf), "model_type": "embedding"}]}
    yield from served(tmp_path_factory.mktemp("telemetry"), config=config)


def spans_named(server: Server, name: str) -> list[dict]:
    body = {"attribute_filters": [{"key": "operation_id", "op": "eq", "value": name}],
            "attributes_to_return": ["operation_id", "http.status_code", "prompt_tokens", "model_id"]}
    for _ in range(50):
        found = httpx.post(f"{server.url}/v1/telemetry/spans", json=body).json()["data"]
        if found:
            return found
        time.sleep(0.1)
    return []


def test_a_call_becomes_a_span_in_the_callers_trace(server: Server) -> None:
    httpx.get(f"{server.url}/v1/version", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    [span] = spans_named(server, "version")
    assert span["trace_id"] == TRACE and span["parent_span_id"] == PARENT
    assert span["attributes"] == {"operation_id": "version", "http.status_code": 200}
    trace = httpx.get(f"{server.url}/v1/telemetry/traces/{TRACE}").json()
    assert trace["root_span_id"] == span["span_id"]
    got = httpx.get(f"{server.url}/v1/telemetry/traces/{TRACE}/spans/{span['span_id']}").json()
    assert got["name"] == "version" and got["end_time"] >= got["start_time"]
    tree = httpx.post(f"{server.url}/v1/telemetry/spans/{span['span_id']}/tree", json={}).json()["data"]
    assert tree[span["span_id"]]["status"] == "ok"


def test_token_usage_is_recorded_and_summed_as_a_metric(server: Server) -> None:
    start = int(time.time()) - 1
    for text in ("hello world", "a b c d"):
        answer = httpx.post(f"{server.url}/v1/embeddings", json={"model": "emb", "input": text})
        assert answer.status_code == 200
    spans = []
    for _ in range(50):
        spans = spans_named(server, "openai_embeddings")
        if len(spans) == 2:
            break
        time.sleep(0.1)
    assert len(spans) == 2 and all(s["attributes"]["model_id"] == "emb" for s in spans)
    expected = sum(s["attributes"]["prompt_tokens"] for s in spans)
    metrics = httpx.post(f"{server.url}/v1/telemetry/metrics/prompt_tokens", json={
        "start_time": start, "query_type": "instant",
        "label_matchers": [{"name": "model_id", "value": "emb", "operator": "="}]}).json()["data"]
    assert [m["values"][0]["value"] for m in metrics] == [expected]


def test_unknown_trace_span_and_metric_are_404(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/telemetry/traces/{'0' * 32}").status_code == 404
    assert httpx.get(f"{server.url}/v1/telemetry/traces/{TRACE}/spans/nope").status_code == 404
    answer = httpx.post(f"{server.url}/v1/telemetry/metrics/nope", json={"start_time": 0, "query_type": "range"})
    assert answer.status_code == 404


def test_spans_saved_to_a_dataset_become_rows(server: Server) -> None:
    spans_named(server, "version") or httpx.get(f"{server.url}/v1/version")
    httpx.post(f"{server.url}/v1/datasets", json={"dataset_id": "spans", "purpose": "eval/question-answer",
                                                   "source": {"type": "rows", "rows": []}})
    saved = httpx.post(f"{server.url}/v1/telemetry/spans/export", json={
        "attribute_filters": [{"key": "operation_id", "op": "eq", "value": "version"}],
        "attributes_to_save": ["operation_id", "http.status_code"], "dataset_id": "spans"})
    assert saved.status_code == 200
    rows = httpx.get(f"{server.url}/v1/datasetio/iterrows/spans").json()["data"]
    assert rows and rows[0] == {"operation_id": "version", "http.status_code": 200}


def test_traces_are_filtered_ordered_and_paged(server: Server) -> None:
    traces = [f"{i:032x}" for i in range(1, 5)]
    for trace in traces:
        assert httpx.get(f"{server.url}/v1/version", headers={"traceparent": f"00-{trace}-{PARENT}-01"}).is_success
    client = LlamaStackClient(base_url=server.url, max_retries=0)
    mine = [{"key": "http.path", "op": "eq", "value": "/v1/version"}]
    for _ in range(50):  # spans are written in batches, flushed before a query reads them
        found = client.telemetry.query_traces(attribute_filters=mine, limit=100)
        if set(traces) <= {t.trace_id for t in found}:
            break
        time.sleep(0.1)
    newest_first = client.telemetry.query_traces(attribute_filters=mine, order_by=["-start_time"], limit=100)
    ids = [t.trace_id for t in newest_first if t.trace_id in traces]
    assert ids == traces[::-1]
    page = client.telemetry.query_traces(attribute_filters=mine, order_by=["-start_time"], offset=1, limit=2)
    assert [t.trace_id for t in page] == [t.trace_id for t in newest_first[1:3]]
    status = [{"key": "http.status_code", "op": "gt", "value": 299}, *mine]
    assert client.telemetry.query_traces(attribute_filters=status) == []
