"""Merge the inputs of concurrent requests into one job on a model's worker thread.

An embedding model runs one job at a time. When many clients each send a few inputs, one
job per request decodes a handful of sequences per `llama_decode` and leaves the batch mostly
empty; llama.cpp packs up to a whole context of sequences into one decode. So requests do not
queue a job each: they add their inputs to a waiting list, and the one job on the queue takes
everything that is waiting when it starts, runs it as one batch, and hands each request its
own rows. Requests that arrive meanwhile wait for the next job, so a burst of N requests
costs about two batches, not N.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from ggstack.core.errors import BusyError
from ggstack.engines.worker import ModelWorker

M = TypeVar("M")


@dataclass
class Waiter:
    items: Sequence[Any]
    future: concurrent.futures.Future[np.ndarray] = field(default_factory=concurrent.futures.Future)


class Coalescer(Generic[M]):
    """`await call(items)` runs `run(model, all waiting items)` on the worker; returns this call's rows.

    At most `max_waiting` requests may wait; the next one is `BusyError` (429), as a full
    worker queue is.
    """

    def __init__(self, worker: ModelWorker[M], run: Callable[[M, list[Any]], np.ndarray], *,
                 max_waiting: int) -> None:
        self._worker = worker
        self._run = run
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._waiting: list[Waiter] = []
        self._scheduled = False

    async def call(self, items: Sequence[Any]) -> np.ndarray:
        waiter = Waiter(items)
        with self._lock:
            if len(self._waiting) >= self._max_waiting:
                raise BusyError(f"model '{self._worker.name}' has {self._max_waiting} requests waiting; "
                                "retry later", retry_after=1)
            self._waiting.append(waiter)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            try:
                job = self._worker.submit(self._drain)
            except BusyError as exc:
                self._fail_waiting(exc)
                raise
            job.result.add_done_callback(self._after_job)
        # Cancelling the await cancels the future; a job that has not taken it yet skips it.
        return await asyncio.wrap_future(waiter.future)

    def _take(self) -> list[Waiter]:
        with self._lock:
            taken, self._waiting, self._scheduled = self._waiting, [], False
        return taken

    def _drain(self, model: M) -> None:
        """Worker thread: one batch for every request waiting now."""
        taken = [w for w in self._take() if w.future.set_running_or_notify_cancel()]
        if not taken:
            return
        try:
            rows = self._run(model, [item for w in taken for item in w.items])
        except BaseException as exc:  # noqa: BLE001 - delivered to every request in the batch
            for w in taken:
                w.future.set_exception(exc)
            return
        at = 0
        for w in taken:
            w.future.set_result(rows[at:at + len(w.items)])
            at += len(w.items)

    def _after_job(self, job: concurrent.futures.Future[Any]) -> None:
        """A job that never ran (the model was unloaded) must not strand its waiters."""
        if job.cancelled() or job.exception() is not None:
            error = job.exception() if not job.cancelled() else None
            self._fail_waiting(error or BusyError(f"model '{self._worker.name}' was unloaded", retry_after=1))

    def _fail_waiting(self, exc: BaseException) -> None:
        for w in self._take():
            if w.future.set_running_or_notify_cancel():
                w.future.set_exception(exc)
