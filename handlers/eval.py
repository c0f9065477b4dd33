"""Evaluation: rows answered by a benchmark config's candidate and scored, at once or as a job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from generated.models.llama_stack_deprecated import (
    CreateAgentRequest,
    CreateAgentSessionRequest,
    CreateAgentTurnRequest,
)
from generated.models.llama_stack_experimental import BenchmarkConfig, EvaluateRowsRequest, RunEvalRequest
from ggstack.core.context import Context
from ggstack.core.errors import InvalidValueError
from ggstack.eval import Answer, evaluate, model_answer
from ggstack.eval.candidates import chat_messages
from ggstack.eval.jobs import Score
from ggstack.http.errors import ApiError, InvalidRequest
from ggstack.inference.legacy import content_text
from ggstack.scoring import MAX_ROWS, ScoringFunctions, plan, score_rows
from handlers.agents.resources import create_agent, create_agent_session
from handlers.agents.turns import create_agent_turn
from handlers.benchmarks import get_benchmark
from handlers.scoring import dataset_rows, invalid_values


async def scorer(ctx: Context, config: BenchmarkConfig, functions: list[str]) -> Score:
    """Scores rows with `functions`, each with the config's scoring_params for it (or its own)."""
    given = config.model_dump(mode="json", exclude_none=True).get("scoring_params") or {}
    requested = {name: given.get(name) for name in functions}
    registry = ScoringFunctions(ctx.metadata)
    await plan(registry, requested)  # unknown functions and unusable params fail before any generation

    async def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return await score_rows(registry, ctx.models, rows, requested)

    return score


async def candidate_answer(ctx: Context, config: BenchmarkConfig) -> Answer:
    candidate = config.eval_candidate.model_dump(mode="json", exclude_none=True)
    if candidate["type"] == "model":
        ctx.models.get(candidate["model"])  # unknown model: 404 now
        return model_answer(ctx.models, candidate)
    return await agent_answer(ctx, candidate["config"])


async def agent_answer(ctx: Context, agent_config: dict[str, Any]) -> Answer:
    """One agent for the evaluation, one single-turn session per row (as the reference does): the
    row's user messages are the turn, its output message the answer, retrieved text its `context`."""
    agent = await create_agent(CreateAgentRequest.model_validate({"agent_config": agent_config}), ctx)

    async def answer(row: Mapping[str, Any]) -> dict[str, Any]:
        messages = [m for m in chat_messages(row) if m.get("role") == "user"]
        try:
            session = await create_agent_session(agent["agent_id"], CreateAgentSessionRequest(session_name="eval"), ctx)
            turn = await create_agent_turn(agent["agent_id"], session["session_id"],
                                           CreateAgentTurnRequest.model_validate({"messages": messages, "stream": False}),
                                           ctx)
            assert isinstance(turn, dict)  # a turn asked for without a stream is the turn itself
        except ApiError as exc:
            raise InvalidValueError(f"the agent could not answer: {exc.message}", field="eval_candidate") from None
        generation = {"generated_answer": content_text((turn.get("output_message") or {}).get("content") or "",
                                                       param="output_message.content")}
        context = [item.get("text", "") for step in turn.get("steps", []) if step.get("step_type") == "memory_retrieval"
                   for item in _items(step.get("inserted_context"))]
        return {**generation, "context": " ".join(context)} if context else generation

    return answer


def _items(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    return [c for c in (content if isinstance(content, list) else [content]) if isinstance(c, dict)]


async def evaluate_rows(benchmark_id: str, body: EvaluateRowsRequest, ctx: Context) -> dict[str, Any]:
    await get_benchmark(benchmark_id, ctx)
    if len(body.input_rows) > MAX_ROWS:
        raise InvalidRequest(f"Invalid value: at most {MAX_ROWS} rows are evaluated at once", param="input_rows")
    with invalid_values():
        score = await scorer(ctx, body.benchmark_config, body.scoring_functions)
        answer = await candidate_answer(ctx, body.benchmark_config)
        return await evaluate(body.input_rows, answer, score)


async def run_eval(benchmark_id: str, body: RunEvalRequest, ctx: Context) -> dict[str, Any]:
    """Rows, functions and candidate are checked before the job starts; the answer is the job scheduled."""
    benchmark = await get_benchmark(benchmark_id, ctx)
    config = body.benchmark_config
    if config.num_examples is not None and config.num_examples < 1:
        raise InvalidRequest("Invalid value: num_examples must be at least 1", param="benchmark_config.num_examples")
    rows = await dataset_rows(ctx, benchmark["dataset_id"], config.num_examples)
    with invalid_values():
        score = await scorer(ctx, config, benchmark["scoring_functions"])
        answer = await candidate_answer(ctx, config)
    job = await ctx.evals.start(benchmark_id, rows, answer, score)
    return {"job_id": job["job_id"], "status": job["status"]}


async def job_status(benchmark_id: str, job_id: str, ctx: Context) -> dict[str, Any]:
    job = await ctx.evals.get(benchmark_id, job_id)
    return {"job_id": job_id, "status": job["status"]}


async def job_cancel(benchmark_id: str, job_id: str, ctx: Context) -> None:
    await ctx.evals.cancel(benchmark_id, job_id)


async def job_result(benchmark_id: str, job_id: str, ctx: Context) -> dict[str, Any]:
    with invalid_values():
        return await ctx.evals.result(benchmark_id, job_id)
