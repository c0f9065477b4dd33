"""Eval jobs: a benchmark's rows answered by a candidate in the background, then scored.

A job is a document in the metadata store (kind "eval_job") whose status moves scheduled →
in_progress → completed, or to failed (with the reason) or cancelled; its result (generations and
scores) is a document of its own (kind "eval_job_result"). The work is an asyncio task in this
process: cancelling the task closes the generations in flight, which stops the model within a
token. A job a previous process left unfinished is marked failed at start-up (`recover`).

Replicas (one PostgreSQL database): a job is leased to the process running it
(ggstack/stores/leases.py), renewed while it runs. Every replica looks for unfinished jobs
whose lease ran out every half lease and fails them with the reason: their rows, candidate
and scorers lived in the dead replica's memory, so they are not resumed. A job cancelled
through another replica is stopped by its owner at the next renewal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ggstack.core.errors import BusyError, DomainError, InvalidValueError, NotFoundError
from ggstack.core.ids import new_id, now
from ggstack.eval.candidates import Answer
from ggstack.stores.leases import Leases

log = logging.getLogger("ggstack.eval.jobs")

KIND = "eval_job"
RESULT_KIND = "eval_job_result"
#: Rows of one job answered at once: the default `parallel` slots of a chat model.
ROW_CONCURRENCY = 4
#: Times a row waits for a full model queue (each wait is the queue's Retry-After) before the job fails.
BUSY_RETRIES = 60
RESTARTED = "the server stopped while this job ran; run it again"
ORPHANED = "the replica running this job stopped (its lease expired); run it again"
FINAL = ("completed", "failed", "cancelled")

Score = Callable[[list[dict[str, Any]]], Awaitable[dict[str, Any]]]


async def answer_rows(rows: Sequence[Mapping[str, Any]], answer: Answer) -> list[dict[str, Any]]:
    """Every row's answer, in row order, at most ROW_CONCURRENCY at once; a failure cancels the rest."""
    gate = asyncio.Semaphore(ROW_CONCURRENCY)

    async def one(row: Mapping[str, Any]) -> dict[str, Any]:
        async with gate:
            for _ in range(BUSY_RETRIES):
                try:
                    return await answer(row)
                except BusyError as exc:
                    await asyncio.sleep(exc.retry_after)
            return await answer(row)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(row)) for row in rows]
    except BaseExceptionGroup as failed:
        # The first row's failure is the answer's (a request's status, a job's reason); the other
        # rows were cancelled because of it.
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def evaluate(rows: Sequence[Mapping[str, Any]], answer: Answer, score: Score) -> dict[str, Any]:
    """The spec's EvaluateResponse: generations, then the scores of the rows with their answers."""
    generations = await answer_rows(rows, answer)
    scored = [{**row, **generation} for row, generation in zip(rows, generations, strict=True)]
    return {"generations": generations, "scores": await score(scored)}


def failure(job_id: str, exc: Exception) -> str:
    """Why a job failed, in the domain's words; anything unexpected is logged, not shown."""
    if isinstance(exc, DomainError):
        return exc.message
    log.error("eval job %s failed", job_id, exc_info=exc)
    return "internal error (see the server log)"


def unfinished(job: dict[str, Any]) -> bool:
    return job["status"] not in FINAL


class EvalJobs:
    """Starts, tracks, cancels and reads jobs; one per server (created in the lifespan)."""

    def __init__(self, metadata: Any, leases: Leases | None = None) -> None:
        self._metadata = metadata
        self._leases = leases or Leases(metadata, shared=False)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Fail what a previous run left; replicas: from then on, what a dead replica leaves too."""
        await self.recover()
        if self._leases.shared:
            self._reaper = self._leases.every_half_lease(self.recover, "orphaned eval jobs")

    async def recover(self) -> int:
        """Mark failed the scheduled or in-progress jobs nobody holds (left by a previous process,
        or by a replica whose lease ran out); how many there were."""
        reason = ORPHANED if self._leases.shared else RESTARTED
        stale = await self._metadata.list(KIND, limit=None, order="asc", where={"status": ["scheduled", "in_progress"]})
        failed = await self._leases.reap(KIND, stale.items, "job_id", unfinished,
                                         {"status": "failed", "completed_at": now(), "error": reason})
        return len(failed)

    async def start(self, benchmark_id: str, rows: Sequence[Mapping[str, Any]], answer: Answer,
                    score: Score) -> dict[str, Any]:
        job: dict[str, Any] = {"job_id": new_id("evaljob-"), "benchmark_id": benchmark_id,
                               "status": "scheduled", "created_at": now(), "num_rows": len(rows)}
        self._leases.stamp(job)
        await self._metadata.put(KIND, job["job_id"], job)
        task = asyncio.create_task(self._run(job["job_id"], list(rows), answer, score))
        self._tasks[job["job_id"]] = task
        task.add_done_callback(lambda _: self._tasks.pop(job["job_id"], None))
        return job

    async def _run(self, job_id: str, rows: list[Mapping[str, Any]], answer: Answer, score: Score) -> None:
        try:
            await self._move(job_id, "in_progress", started_at=now())
            # finished or taken over elsewhere while it runs (a cancel through another replica): stop
            stop = asyncio.current_task().cancel  # type: ignore[union-attr]
            async with self._leases.kept(KIND, job_id, unfinished, lost=stop):
                result = await evaluate(rows, answer, score)
            await self._metadata.put(RESULT_KIND, job_id, result, parent=job_id)
            await self._move(job_id, "completed", completed_at=now())
        except asyncio.CancelledError:
            await asyncio.shield(self._move(job_id, "cancelled", completed_at=now()))
            raise
        except Exception as exc:  # noqa: BLE001 - the job's outcome, not a request's: recorded, not raised
            await self._move(job_id, "failed", completed_at=now(), error=failure(job_id, exc))

    async def _move(self, job_id: str, status: str, **fields: Any) -> None:
        """Change an unfinished job's status; a finished one keeps its own."""
        def change(job: dict[str, Any]) -> dict[str, Any]:
            return job if job["status"] in FINAL else {**job, **fields, "status": status}

        await self._metadata.update(KIND, job_id, change)

    async def get(self, benchmark_id: str, job_id: str) -> dict[str, Any]:
        job = await self._metadata.get(KIND, job_id)
        if job is None or job["benchmark_id"] != benchmark_id:
            raise NotFoundError(f"Job '{job_id}' of benchmark '{benchmark_id}' not found", kind=KIND, identifier=job_id)
        return job

    async def cancel(self, benchmark_id: str, job_id: str) -> dict[str, Any]:
        """Stop a running job and wait until it has stopped; a finished job stays as it is."""
        await self.get(benchmark_id, job_id)
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._move(job_id, "cancelled", completed_at=now())
        return await self.get(benchmark_id, job_id)

    async def result(self, benchmark_id: str, job_id: str) -> dict[str, Any]:
        job = await self.get(benchmark_id, job_id)
        if job["status"] != "completed":
            reason = f" ({job['error']})" if job.get("error") else ""
            raise InvalidValueError(f"Job '{job_id}' is not completed: it is {job['status']}{reason}", field="job_id")
        result = await self._metadata.get(RESULT_KIND, job_id, parent=job_id)
        return result or {"generations": [], "scores": {}}

    async def close(self) -> None:
        """Shutting down: running jobs stop and are marked failed (a restart would say the same)."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        tasks = list(self._tasks.items())
        for _, task in tasks:
            task.cancel()
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)
        for job_id, _ in tasks:
            await self._metadata.update(KIND, job_id, {"status": "failed", "error": RESTARTED})
