"""Client telemetry events through llama-stack-client 0.2.23: spans, logs and metrics a client
logs are found by the same Telemetry queries as the server's own spans."""

from __future__ import annotations

import time

import llama_stack_client
import pytest
from llama_stack_client import LlamaStackClient

from tests.server import Server

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
CHILD = "c7ad6b7169203332"


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> LlamaStackClient:
    running = Server(tmp_path_factory.mktemp("telemetry_events")).start()
    yield LlamaStackClient(base_url=running.url, max_retries=0)
    running.stop()
    assert running.mismatches() == []


def stamp(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset)) + "+00:00"


def log(client: LlamaStackClient, span_id: str, **event) -> None:
    client.telemetry.log_event(event={"trace_id": TRACE, "span_id": span_id, "timestamp": stamp(), **event},
                               ttl_seconds=60)


def spans(client: LlamaStackClient, key: str, value) -> list:
    return client.telemetry.query_spans(attribute_filters=[{"key": key, "op": "eq", "value": value}],
                                        attributes_to_return=["message", "severity", "metric", "value", "job"])


def test_client_spans_logs_and_metrics_are_queryable(client: LlamaStackClient) -> None:
    log(client, SPAN, type="structured_log", payload={"type": "span_start", "name": "client-job"},
        attributes={"job": "nightly"})
    log(client, CHILD, type="structured_log", payload={"type": "span_start", "name": "step", "parent_span_id": SPAN})
    log(client, CHILD, type="unstructured_log", message="halfway there", severity="info")
    log(client, CHILD, type="metric", metric="rows_done", value=40, unit="rows")
    log(client, CHILD, type="metric", metric="rows_done", value=2, unit="rows")
    log(client, CHILD, type="structured_log", payload={"type": "span_end", "status": "ok"})
    log(client, SPAN, type="structured_log", payload={"type": "span_end", "status": "error"})

    [job] = spans(client, "name", "client-job")
    assert job.trace_id == TRACE and job.span_id == SPAN and job.attributes == {"job": "nightly"} and job.end_time
    [line] = spans(client, "name", "log")
    assert line.parent_span_id == CHILD and line.attributes == {"message": "halfway there", "severity": "info"}
    assert client.telemetry.get_trace(TRACE).root_span_id in (SPAN, CHILD)
    tree = client.telemetry.get_span_tree(SPAN)
    assert {CHILD, line.span_id} <= set(tree)
    assert client.telemetry.get_span(SPAN, trace_id=TRACE).name == "client-job"
    [series] = client.telemetry.query_metrics("rows_done", query_type="instant", start_time=int(time.time()) - 3600)
    assert series.metric == "rows_done" and [(v.value, v.unit) for v in series.values] == [(42.0, "rows")]


def test_client_spans_do_not_count_as_server_requests(client: LlamaStackClient) -> None:
    log(client, "d7ad6b7169203333", type="structured_log", payload={"type": "span_start", "name": "quiet"})
    series = client.telemetry.query_metrics("requests", query_type="instant", start_time=int(time.time()) - 3600)
    counted = {label.value for s in series for label in s.labels if label.name == "operation_id"}
    assert "" not in counted  # client spans carry no operation_id; none were counted


def test_bad_events_are_400(client: LlamaStackClient) -> None:
    with pytest.raises(llama_stack_client.BadRequestError, match="never started"):
        log(client, "e7ad6b7169203334", type="structured_log", payload={"type": "span_end", "status": "ok"})
    with pytest.raises(llama_stack_client.BadRequestError, match="not an ISO 8601"):
        client.telemetry.log_event(event={"trace_id": TRACE, "span_id": SPAN, "timestamp": "yesterday",
                                          "type": "unstructured_log", "message": "x", "severity": "info"},
                                   ttl_seconds=1)
    with pytest.raises(llama_stack_client.NotFoundError, match="no client has logged"):
        client.telemetry.query_metrics("never_logged", query_type="instant", start_time=0)
