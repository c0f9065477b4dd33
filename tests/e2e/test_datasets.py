"""Datasets, DatasetIO and Benchmarks through a real server."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.server import Server, served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    yield from served(tmp_path_factory.mktemp("datasets"))


def register(server: Server, dataset_id: str, source: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/datasets", json={"purpose": "eval/question-answer", "source": source,
                                                          "dataset_id": dataset_id})


def test_rows_dataset_lifecycle_and_paging(server: Server) -> None:
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    created = register(server, "qa", {"type": "rows", "rows": rows})
    assert created.status_code == 200 and created.json()["identifier"] == "qa"
    page = httpx.get(f"{server.url}/v1/datasetio/iterrows/qa", params={"start_index": 1, "limit": 2}).json()
    assert page == {"data": rows[1:3], "has_more": True}
    appended = httpx.post(f"{server.url}/v1/datasetio/append-rows/qa", json={"rows": [{"question": "q5", "answer": "a5"}]})
    assert appended.status_code == 200
    everything = httpx.get(f"{server.url}/v1beta/datasetio/iterrows/qa").json()
    assert len(everything["data"]) == 6 and everything["has_more"] is False
    assert [d["identifier"] for d in httpx.get(f"{server.url}/v1/datasets").json()["data"]] == ["qa"]
    assert httpx.delete(f"{server.url}/v1/datasets/qa").status_code == 200
    assert httpx.get(f"{server.url}/v1/datasets/qa").status_code == 404


def test_data_uri_csv_source_is_read(server: Server) -> None:
    payload = base64.b64encode(b"question,answer\nWhat is 2+2?,4\n").decode()
    assert register(server, "csv", {"type": "uri", "uri": f"data:text/csv;base64,{payload}"}).status_code == 200
    page = httpx.get(f"{server.url}/v1/datasetio/iterrows/csv").json()
    assert page["data"] == [{"question": "What is 2+2?", "answer": "4"}]


def test_remote_uri_rows_are_a_clear_400(server: Server) -> None:
    assert register(server, "remote", {"type": "uri", "uri": "https://example.com/x.jsonl"}).status_code == 200
    answer = httpx.get(f"{server.url}/v1/datasetio/iterrows/remote")
    assert answer.status_code == 400 and "cannot read" in answer.json()["detail"]


def test_duplicate_dataset_is_409_and_nothing_is_lost(server: Server) -> None:
    register(server, "dup", {"type": "rows", "rows": [{"a": 1}]})
    assert register(server, "dup", {"type": "rows", "rows": [{"a": 2}]}).status_code == 409
    assert httpx.get(f"{server.url}/v1/datasetio/iterrows/dup").json()["data"] == [{"a": 1}]


def test_benchmark_lifecycle(server: Server) -> None:
    register(server, "bench-ds", {"type": "rows", "rows": [{"question": "q", "answer": "a"}]})
    body = {"benchmark_id": "b1", "dataset_id": "bench-ds", "scoring_functions": ["basic::equality"]}
    assert httpx.post(f"{server.url}/v1/eval/benchmarks", json=body).status_code == 200
    got = httpx.get(f"{server.url}/v1alpha/eval/benchmarks/b1").json()
    assert got["dataset_id"] == "bench-ds" and got["type"] == "benchmark"
    assert [b["identifier"] for b in httpx.get(f"{server.url}/v1/eval/benchmarks").json()["data"]] == ["b1"]
    assert httpx.delete(f"{server.url}/v1/eval/benchmarks/b1").status_code == 200
    assert httpx.get(f"{server.url}/v1/eval/benchmarks/b1").status_code == 404


def test_benchmark_on_unknown_dataset_is_404(server: Server) -> None:
    body = {"benchmark_id": "b2", "dataset_id": "nope", "scoring_functions": []}
    assert httpx.post(f"{server.url}/v1/eval/benchmarks", json=body).status_code == 404
