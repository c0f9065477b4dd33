"""One thread per loaded model, running that model's jobs one at a time from a bounded queue.

Embedding models and ctransformers models run on this; llama.cpp chat models have a
`scheduler.BatchScheduler` instead, which decodes several requests together.

A llama.cpp context is not thread-safe and a decode blocks for milliseconds to seconds, so
the model object lives on, and is only touched from, its own thread. Requests never hold a
lock: they put a job in the queue and await its result; a full queue is `BusyError` at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ggstack.core.errors import BusyError

log = logging.getLogger("ggstack.engines")

M = TypeVar("M")
R = TypeVar("R")

DEFAULT_MAX_QUEUE = 8


@dataclass
class Job(Generic[M]):
    """Work for the model thread. `run` gets the model; `cancelled` lets it be skipped or cut short."""

    run: Callable[[M], Any]
    cancelled: threading.Event = field(default_factory=threading.Event)
    result: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class ModelWorker(Generic[M]):
    """Owns one model object on one daemon thread.

    `max_queue` counts jobs waiting behind the running one; submitting to a full queue raises
    `BusyError` (429 with Retry-After) rather than letting latency grow without bound.
    """

    def __init__(self, name: str, factory: Callable[[], M], *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.name = name
        self._factory = factory
        self._jobs: queue.Queue[Job[M] | None] = queue.Queue(maxsize=max_queue)
        self._loaded: concurrent.futures.Future[M] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=f"model-{name}", daemon=True)
        self._closed = False
        self._current: Job[M] | None = None

    async def start(self) -> M:
        """Start the thread, wait for the model to load there, and return it (or raise the load error)."""
        self._thread.start()
        return await asyncio.wrap_future(self._loaded)

    def submit(self, run: Callable[[M], R], *, cancelled: threading.Event | None = None) -> Job[M]:
        """Queue `run(model)`; raise BusyError if `max_queue` jobs are already waiting."""
        if self._closed:
            raise BusyError(f"model '{self.name}' is being unloaded", retry_after=1)
        job: Job[M] = Job(run, cancelled or threading.Event())
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise BusyError(f"model '{self.name}' has {self._jobs.maxsize} requests waiting; retry later",
                             retry_after=1) from None
        return job

    async def call(self, run: Callable[[M], R]) -> R:
        """Run `run(model)` on the model thread and await its return value."""
        job = self.submit(run)
        try:
            return await asyncio.wrap_future(job.result)
        finally:
            job.cancelled.set()  # if we were cancelled while waiting, the worker skips the job

    def close(self, timeout: float = 30.0) -> None:
        """Cancel waiting jobs, let the running one see its flag, stop the thread (blocking)."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancelled.set()
                if job.result.set_running_or_notify_cancel():
                    job.result.set_exception(BusyError(f"model '{self.name}' was unloaded", retry_after=1))
        current = self._current
        if current is not None:
            current.cancelled.set()
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("model thread %s did not stop within %.0fs", self.name, timeout)

    def _main(self) -> None:
        try:
            model = self._factory()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting loader, not swallowed
            self._loaded.set_exception(exc)
            return
        self._loaded.set_result(model)
        try:
            while (job := self._jobs.get()) is not None:
                if job.cancelled.is_set():
                    job.result.cancel()  # runs done-callbacks, so stream consumers are told
                    continue
                if not job.result.set_running_or_notify_cancel():
                    continue
                self._current = job
                try:
                    job.result.set_result(job.run(model))
                except BaseException as exc:  # noqa: BLE001 - delivered to the job's awaiter
                    job.result.set_exception(exc)
                finally:
                    self._current = None
        finally:
            close = getattr(model, "close", None)
            if callable(close):
                close()


def default_threads() -> int:
    """Half the cores: ggml's and ncnn's worker threads spin-wait, and on a busy machine a model
    using every core collapses (docs/benchmarks.md, embeddings), while half keeps its pace."""
    return max(1, (os.cpu_count() or 1) // 2)
