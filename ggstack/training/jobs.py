"""Fine-tuning jobs: kept in the metadata store, run one at a time by a background worker.

A job document (kind "training_job", id = job_uuid) is the truth clients read: status, times,
per-step losses, checkpoints and, when it failed, why. The worker runs each llama.cpp call
(load, one step, one evaluation, one save) in a thread and comes back to the event loop in
between, so progress is written as it happens and a cancel takes effect at the next step.

What survives a restart: the documents. A job that was in progress or waiting when the server
stopped is marked failed with that reason at the next start (its weights were only in memory);
checkpoints it finished stay on disk and listed. A checkpoint is written to a temporary name and
renamed when complete, so no reader ever sees half a model.

Replicas (one PostgreSQL database): a job is leased to the process it was submitted to
(ggstack/stores/leases.py) and renewed while it waits and runs. Only jobs nobody holds are
failed: at start, those of a previous run; on replicas, every half lease, those whose replica
died (its lease ran out). A replica starting or stopping leaves the others' jobs alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread

from ggstack.core.errors import AlreadyExistsError, BusyError, DomainError, InvalidValueError, NotFoundError
from ggstack.datasets.rows import ROW_KIND, rows_parent
from ggstack.engines.registry import ModelRegistry
from ggstack.stores.base import MetadataStore
from ggstack.stores.leases import Leases
from ggstack.training.data import Window, make_windows
from ggstack.training.metadata import restore_metadata
from ggstack.training.native import Hyper, Trainer, convert, dequantize
from ggstack.training.plan import Plan

log = logging.getLogger("ggstack.training")

JOB_KIND = "training_job"
DATASET_KIND = "dataset"
#: Jobs that may wait behind the running one; past this a submission is refused (429).
MAX_WAITING = 4
#: Rows one dataset may give a job.
MAX_ROWS = 100_000
ACTIVE = ("scheduled", "in_progress")
RESTARTED = "the server restarted while the job was waiting or running; its weights were only in memory"
STOPPED = "the server stopped while the job was waiting or running"
ORPHANED = ("the replica running this job stopped (its lease expired) while the job was waiting or running; "
            "its weights were only in memory")


def active(job: dict[str, Any]) -> bool:
    return job["status"] in ACTIVE


def _remove_partials(folder: Path) -> None:
    """What a killed job leaves: checkpoints it was writing, and its F32 working copy."""
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.endswith((".partial", ".f32.gguf")):
                path.unlink(missing_ok=True)


class Cancelled(Exception):
    """The job's cancel was seen between two steps."""


def timestamp() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class TrainingSetup:
    """What the worker needs from the server's settings."""

    window: int
    threads: int
    work_dir: Path
    checkpoint_type: str = "f32"


class TrainingWorker:
    def __init__(self, *, metadata: MetadataStore, models: ModelRegistry, setup: TrainingSetup,
                 leases: Leases | None = None) -> None:
        self.metadata = metadata
        self.leases = leases or Leases(metadata, shared=False)
        #: the leases this process keeps renewing: its waiting jobs and the running one
        self._kept: dict[str, contextlib.AsyncExitStack] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.models = models
        self.setup = setup
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        #: ids taken by this process, and queue places held, both claimed before the first await of
        #: a submission so that two concurrent ones cannot both pass the checks
        self._claimed: set[str] = set()
        self._waiting = 0
        self._cancelling: set[str] = set()
        self._running: str | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._fail_unheld()
        await anyio.to_thread.run_sync(_remove_partials, self.setup.work_dir)
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="training")
        if self.leases.shared:
            self._reaper = self.leases.every_half_lease(self._fail_unheld, "orphaned training jobs")

    async def close(self) -> None:
        """Stop: the step in progress ends (llama.cpp cannot be interrupted mid-step), then this
        process's jobs fail (another replica's are not touched)."""
        for task in (self._task, self._reaper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._reaper = None
        for job_uuid in list(self._kept):
            await self._release(job_uuid)
        for job in await self.all_jobs():
            if active(job) and self.leases.mine(job):
                await self._finish(job["job_uuid"], "failed", error=STOPPED)
                await anyio.to_thread.run_sync(_remove_partials, Path(job["plan"]["checkpoint_dir"]))

    async def _fail_unheld(self) -> None:
        """Fail the waiting or running jobs nobody holds: a previous run's, or a dead replica's."""
        reason = ORPHANED if self.leases.shared else RESTARTED
        failed = await self.leases.reap(JOB_KIND, await self.all_jobs(), "job_uuid", active,
                                        {"status": "failed", "completed_at": timestamp(), "error": reason})
        for job in failed:
            await anyio.to_thread.run_sync(_remove_partials, Path(job["plan"]["checkpoint_dir"]))

    async def _keep(self, job_uuid: str) -> None:
        """Renew the job's lease until `_release`; failed elsewhere meanwhile (its lease ran out), it stops."""
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self.leases.kept(
            JOB_KIND, job_uuid, active, lost=functools.partial(self._cancelling.add, job_uuid)))
        self._kept[job_uuid] = stack

    async def _release(self, job_uuid: str) -> None:
        stack = self._kept.pop(job_uuid, None)
        if stack is not None:
            await stack.aclose()

    # -- what handlers call -----------------------------------------------------------------

    async def submit(self, plan: Plan) -> dict[str, Any]:
        spec = self.models.get(plan.model)  # NotFoundError for an unknown model, before a job exists
        if spec.engine != "llama-cpp" or spec.model_type != "llm":
            raise InvalidValueError(f"model {plan.model} is not a llama.cpp LLM; only those can be fine-tuned",
                                    field="model")
        if plan.job_uuid in self._claimed:
            raise AlreadyExistsError(f"training job {plan.job_uuid} already exists")
        if self._waiting >= MAX_WAITING:
            raise BusyError(f"{MAX_WAITING} training jobs are already waiting; try again later", retry_after=60)
        self._claimed.add(plan.job_uuid)
        self._waiting += 1
        try:
            if await self.metadata.get(JOB_KIND, plan.job_uuid) is not None:
                raise AlreadyExistsError(f"training job {plan.job_uuid} already exists")
            job = {"job_uuid": plan.job_uuid, "status": "scheduled", "scheduled_at": timestamp(),
                   "plan": plan.as_dict(), "checkpoints": [], "steps": []}
            self.leases.stamp(job)
            await self.metadata.put(JOB_KIND, plan.job_uuid, job)
        except BaseException:
            self._waiting -= 1
            raise
        await self._keep(plan.job_uuid)
        self._queue.put_nowait(plan.job_uuid)
        return job

    async def get(self, job_uuid: str) -> dict[str, Any]:
        job = await self.metadata.get(JOB_KIND, job_uuid)
        if job is None:
            raise NotFoundError(f"training job {job_uuid} not found", kind="training job", identifier=job_uuid)
        return job

    async def all_jobs(self) -> list[dict[str, Any]]:
        return (await self.metadata.list(JOB_KIND, limit=None, order="asc")).items

    async def cancel(self, job_uuid: str) -> None:
        """A waiting job is cancelled at once; a running one at its next step (another replica's
        sees the request in its document). Finished jobs stay as they are."""
        job = await self.get(job_uuid)
        if job_uuid == self._running:
            self._cancelling.add(job_uuid)
        elif job["status"] == "scheduled":
            await self._finish(job_uuid, "cancelled")
        elif job["status"] == "in_progress":
            await self._update(job_uuid, cancel_requested=True)

    # -- the worker -------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            job_uuid = await self._queue.get()
            self._waiting -= 1
            job = await self.metadata.get(JOB_KIND, job_uuid)
            if job is None or job["status"] != "scheduled":
                self._cancelling.discard(job_uuid)
                await self._release(job_uuid)
                continue  # cancelled while it waited
            self._running = job_uuid
            try:
                await self._run(Plan(**job["plan"]))
            finally:
                self._running = None
                self._cancelling.discard(job_uuid)
                await self._release(job_uuid)

    async def _run(self, plan: Plan) -> None:
        await self._update(plan.job_uuid, status="in_progress", started_at=timestamp())
        try:
            await self._train(plan)
        except Cancelled:
            await self._finish(plan.job_uuid, "cancelled")
        except DomainError as exc:
            await self._finish(plan.job_uuid, "failed", error=exc.message)
        except asyncio.CancelledError:
            raise  # the server is stopping: close() marks the job failed
        except Exception:
            log.exception("training job %s failed", plan.job_uuid)
            await self._finish(plan.job_uuid, "failed", error="internal error (see the server log)")
        else:
            await self._finish(plan.job_uuid, "completed")

    async def _train(self, plan: Plan) -> None:
        train, validation = await self._windows(plan)
        out = Path(plan.checkpoint_dir)
        for folder in (out, self.setup.work_dir):
            await anyio.to_thread.run_sync(functools.partial(folder.mkdir, parents=True, exist_ok=True))
        base = self.setup.work_dir / f"{plan.job_uuid}.f32.gguf"
        source = self.models.get(plan.model).path
        if source is None:
            raise InvalidValueError(f"model {plan.model} has no local file to train")
        trainer: Trainer | None = None
        try:
            await anyio.to_thread.run_sync(lambda: dequantize(source, base, threads=self.setup.threads))
            self._check_cancel(plan)
            trainer = await anyio.to_thread.run_sync(lambda: Trainer(
                base, window=self.setup.window, threads=self.setup.threads,
                hyper=Hyper(plan.optimizer, plan.lr, plan.weight_decay), masked=not plan.train_on_input))
            step = 0
            for epoch in range(1, plan.n_epochs + 1):
                losses = []
                for window in self._epoch_windows(plan, train, epoch):
                    self._check_cancel(plan)
                    trainer.set_lr(plan.lr_at(step))
                    loss = await anyio.to_thread.run_sync(trainer.step, window.tokens, window.answer)
                    losses.append(loss)
                    step += 1
                    await self._append(plan.job_uuid, "steps", {"epoch": epoch, "step": step, "loss": loss})
                self._check_cancel(plan)
                checked = validation[:plan.max_validation_steps]
                val = [await anyio.to_thread.run_sync(trainer.evaluate, w.tokens, w.answer) for w in checked]
                await self._checkpoint(plan, trainer, base, epoch, losses, val)
        finally:
            if trainer is not None:
                await anyio.to_thread.run_sync(trainer.close)
            await anyio.to_thread.run_sync(lambda: base.unlink(missing_ok=True))

    def _check_cancel(self, plan: Plan) -> None:
        if plan.job_uuid in self._cancelling:
            raise Cancelled

    def _epoch_windows(self, plan: Plan, windows: list[Window], epoch: int) -> list[Window]:
        order = list(windows)
        if plan.shuffle:
            random.Random(f"{plan.job_uuid}:{epoch}").shuffle(order)  # reproducible per job and epoch
        return order[:plan.max_steps_per_epoch]

    async def _windows(self, plan: Plan) -> tuple[list[Window], list[Window]]:
        """Training windows, and validation windows (from the validation dataset, else the
        training windows themselves: then validation_loss is measured on training data). Both
        answer-only unless train_on_input."""
        engine = await self.models.chat(plan.model)

        async def windows(dataset_id: str) -> list[Window]:
            return await make_windows(engine, await self._rows(dataset_id), plan.data_format,  # type: ignore[arg-type]
                                      self.setup.window, train_on_input=plan.train_on_input)

        train = await windows(plan.dataset_id)
        return train, train if plan.validation_dataset_id is None else await windows(plan.validation_dataset_id)

    async def _rows(self, dataset_id: str) -> list[dict[str, Any]]:
        dataset = await self.metadata.get(DATASET_KIND, dataset_id)
        if dataset is None:
            raise InvalidValueError(f"dataset {dataset_id} not found")
        if not dataset.get("readable", True):
            raise InvalidValueError(f"the rows of dataset {dataset_id} live at a URL this server cannot read")
        page = await self.metadata.list(ROW_KIND, parent=rows_parent(dataset), limit=MAX_ROWS + 1, order="asc")
        if len(page.items) > MAX_ROWS:
            raise InvalidValueError(f"dataset {dataset_id} has more than {MAX_ROWS} rows")
        return page.items

    async def _checkpoint(self, plan: Plan, trainer: Trainer, base: Path, epoch: int, losses: list[float],
                          validation: list[float]) -> None:
        """Written under temporary names, then renamed: a cancel or crash never leaves half a file."""
        path = Path(plan.checkpoint_dir) / f"epoch-{epoch}.gguf"
        saved, whole, partial = (path.with_name(f"{path.name}.{stage}.partial") for stage in ("saved", "whole", "out"))
        try:
            await anyio.to_thread.run_sync(trainer.save, saved)
            await anyio.to_thread.run_sync(restore_metadata, base, saved, whole)
            if self.setup.checkpoint_type == "f32":
                await anyio.to_thread.run_sync(os.replace, whole, partial)
            else:
                await anyio.to_thread.run_sync(functools.partial(
                    convert, whole, partial, self.setup.checkpoint_type, threads=self.setup.threads))
            await anyio.to_thread.run_sync(os.replace, partial, path)
        finally:
            for leftover in (saved, whole, partial):
                await anyio.to_thread.run_sync(functools.partial(leftover.unlink, missing_ok=True))
        await self._append(plan.job_uuid, "checkpoints", {
            "epoch": epoch, "file": str(path), "created_at": timestamp(),
            "train_loss": sum(losses) / len(losses),
            "validation_loss": sum(validation) / len(validation) if validation else None})

    # -- the job document -------------------------------------------------------------------

    async def _update(self, job_uuid: str, **fields: Any) -> None:
        await self.metadata.update(JOB_KIND, job_uuid, fields)

    async def _append(self, job_uuid: str, key: str, item: dict[str, Any]) -> None:
        job = await self.metadata.update(JOB_KIND, job_uuid, lambda job: job[key].append(item))
        if job is not None and job.get("cancel_requested"):
            self._cancelling.add(job_uuid)  # asked through another replica

    async def _finish(self, job_uuid: str, status: str, *, error: str | None = None) -> None:
        fields: dict[str, Any] = {"status": status, "completed_at": timestamp()}
        if error is not None:
            fields["error"] = error
        await self._update(job_uuid, **fields)
