"""GET /metrics (Prometheus text format) and JSON logs, on a real server with the tiny chat model."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from ggstack.http.docs import spec_document
from tests.server import Server, served

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_gguf):
    models = [{"identifier": "tiny", "path": str(tiny_chat_gguf), "model_type": "llm", "options": {"parallel": 2}}]
    yield from served(tmp_path_factory.mktemp("metrics"), config={"models": models, "log_format": "json"})


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample line."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def test_requests_latency_tokens_and_slots(server: Server) -> None:
    httpx.get(f"{server.url}/v1/models")
    httpx.get(f"{server.url}/v1/models")
    httpx.get(f"{server.url}/v1/no-such-route")
    answer = httpx.post(f"{server.url}/v1/chat/completions", timeout=120,
                        json={"model": "tiny", "messages": HI, "max_tokens": 3}).json()
    reply = httpx.get(f"{server.url}/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = samples(reply.text)
    assert metrics['ggstack_http_requests_total{route="list_models",method="GET",status="200"}'] == 2
    assert metrics['ggstack_http_requests_total{route="unmatched",method="GET",status="404"}'] == 1
    assert metrics['ggstack_http_requests_total{route="openai_chat_completion",method="POST",status="200"}'] == 1
    buckets = [v for k, v in metrics.items()
               if k.startswith('ggstack_http_request_duration_seconds_bucket{route="list_models",method="GET"')]
    assert buckets == sorted(buckets) and buckets[-1] == 2  # cumulative, ending at the count
    assert metrics['ggstack_http_request_duration_seconds_count{route="list_models",method="GET"}'] == 2
    assert metrics['ggstack_tokens_generated_total{model="tiny"}'] == answer["usage"]["completion_tokens"]
    assert metrics['ggstack_model_slots{model="tiny"}'] == 2
    assert metrics['ggstack_model_slots_in_use{model="tiny"}'] == 0
    assert metrics['ggstack_model_queue_depth{model="tiny"}'] == 0
    assert metrics["ggstack_ingest_backlog"] == 0
    assert re.search(r"^# TYPE ggstack_http_request_duration_seconds histogram$", reply.text, re.MULTILINE)


def test_metrics_route_is_in_no_api_document() -> None:
    for name in ("merged", "llama-stack-stable", "dell-pro-ai-studio"):
        assert not any(path.endswith("/metrics") for path in spec_document(name)["paths"])


def test_json_logs(server: Server) -> None:
    entries = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert entries, server.log()
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    loggers = {entry["logger"] for entry in entries}
    assert "ggstack.core.lifespan" in loggers and "uvicorn.error" in loggers
