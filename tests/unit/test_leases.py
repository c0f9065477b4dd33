"""Leases on one real SQLite file, two `Leases` playing two replicas (`shared` forced on, as
PostgreSQL would have it); eval and training recovery fail only the jobs nobody holds."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from ggstack.eval.jobs import KIND as EVAL_KIND
from ggstack.eval.jobs import ORPHANED, EvalJobs
from ggstack.stores.leases import Leases
from ggstack.stores.sql import SqlMetadataStore
from ggstack.training.jobs import JOB_KIND, TrainingSetup, TrainingWorker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path):
    s = SqlMetadataStore.open(f"sqlite:///{tmp_path / 'meta.db'}")
    yield s
    s.close()


def expired(doc: dict) -> dict:
    return {**doc, "lease_until": time.time() - 1}


async def test_a_live_lease_is_not_taken_and_an_expired_one_is(store):
    mine, theirs = Leases(store, shared=True), Leases(store, shared=True)
    doc = {"id": "f", "status": "in_progress"}
    theirs.stamp(doc)
    await store.put("work", "f", doc)
    assert theirs.held(doc) and mine.held(doc) and not mine.mine(doc)
    assert await mine.take("work", "f", lambda d: True) is None
    await store.put("work", "f", expired(doc))
    taken = await mine.take("work", "f", lambda d: True)
    assert taken is not None and mine.mine(taken) and not theirs.mine(taken)


async def test_one_process_claims_whatever_a_previous_run_left(store):
    previous, now = Leases(store, shared=False), Leases(store, shared=False)
    doc = {"id": "f"}
    previous.stamp(doc)  # an unexpired lease means nothing when the database is this process's alone
    await store.put("work", "f", doc)
    assert not now.held(doc)
    assert await now.take("work", "f", lambda d: True) is not None


async def test_a_kept_lease_is_renewed_until_the_work_is_taken_away(store):
    leases = Leases(store, shared=True, seconds=0.06)
    doc = {"id": "f", "status": "in_progress"}
    leases.stamp(doc)
    await store.put("work", "f", doc)
    lost = asyncio.Event()
    async with leases.kept("work", "f", lambda d: d["status"] == "in_progress", lost=lost.set):
        with anyio.fail_after(30):
            while (await store.get("work", "f"))["lease_until"] <= doc["lease_until"]:
                await asyncio.sleep(0.01)
            await store.update("work", "f", {"status": "cancelled"})  # cancelled through another replica
            await lost.wait()


async def test_eval_recovery_fails_only_jobs_whose_lease_ran_out(store):
    mine, theirs = Leases(store, shared=True), Leases(store, shared=True)
    for job_id, lease in (("live", lambda d: d), ("dead", expired)):
        job = {"job_id": job_id, "benchmark_id": "b", "status": "in_progress"}
        theirs.stamp(job)
        await store.put(EVAL_KIND, job_id, lease(job))
    assert await EvalJobs(store, mine).recover() == 1
    assert (await store.get(EVAL_KIND, "live"))["status"] == "in_progress"
    dead = await store.get(EVAL_KIND, "dead")
    assert dead["status"] == "failed" and dead["error"] == ORPHANED


async def test_training_start_and_stop_leave_another_replicas_jobs_alone(store, tmp_path):
    mine, theirs = Leases(store, shared=True), Leases(store, shared=True)
    for job_uuid, lease in (("live", lambda d: d), ("dead", expired)):
        job = {"job_uuid": job_uuid, "status": "in_progress", "plan": {"checkpoint_dir": str(tmp_path / job_uuid)}}
        theirs.stamp(job)
        await store.put(JOB_KIND, job_uuid, lease(job))
    worker = TrainingWorker(metadata=store, models=None, leases=mine,  # type: ignore[arg-type]
                            setup=TrainingSetup(window=8, threads=1, work_dir=tmp_path / "work"))
    await worker.start()
    await worker.close()
    assert (await store.get(JOB_KIND, "live"))["status"] == "in_progress"
    dead = await store.get(JOB_KIND, "dead")
    assert dead["status"] == "failed" and "lease expired" in dead["error"]
