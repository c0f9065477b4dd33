"""Health probes that arrive together share one check of the stores; a later probe reuses a clean
check for `health_ttl_s` and checks again after it, or at once after a check that found a problem."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

from ggstack.providers.health import server_problems
from ggstack.stores.sql import SqlMetadataStore

pytestmark = pytest.mark.anyio


class HeldPings:
    """The real SQL store's ping, counted, each held until the test lets it answer."""

    def __init__(self, store: SqlMetadataStore) -> None:
        self.store = store
        self.pings = 0
        self.release = anyio.Event()

    async def ping(self) -> None:
        self.pings += 1
        await self.release.wait()
        await self.store.ping()


async def test_concurrent_probes_share_one_check_and_later_ones_check_again(tmp_path: Path) -> None:
    store = await anyio.to_thread.run_sync(SqlMetadataStore.open, f"sqlite:///{tmp_path / 'db.sqlite'}")
    database, chroma = HeldPings(store), HeldPings(store)
    ctx = SimpleNamespace(health=None, metadata=database, vectors=chroma, models=SimpleNamespace(loaded=list),
                          settings=SimpleNamespace(health_ttl_s=0.0))
    answers: list[list[str]] = []

    async def probe() -> None:
        answers.append(await server_problems(ctx))

    try:
        async with anyio.create_task_group() as tasks:
            for _ in range(16):
                tasks.start_soon(probe)
            await anyio.wait_all_tasks_blocked()
            database.release.set()
            chroma.release.set()
        assert answers == [[]] * 16
        assert (database.pings, chroma.pings) == (1, 1)
        assert await server_problems(ctx) == []
        assert (database.pings, chroma.pings) == (2, 2)
    finally:
        await anyio.to_thread.run_sync(store.close)


class Down:
    """A store that does not answer, until the test brings it back."""

    def __init__(self) -> None:
        self.pings = 0
        self.up = False

    async def ping(self) -> None:
        self.pings += 1
        if not self.up:
            raise ConnectionError("down")


async def test_a_clean_check_answers_for_the_ttl_and_a_failed_one_is_not_kept(tmp_path: Path) -> None:
    database, chroma = Down(), Down()
    ctx = SimpleNamespace(health=None, metadata=database, vectors=chroma, models=SimpleNamespace(loaded=list),
                          settings=SimpleNamespace(health_ttl_s=3600.0))
    assert await server_problems(ctx) == ["database does not answer", "chroma does not answer"]
    database.up = chroma.up = True
    assert await server_problems(ctx) == []  # the failed check was not kept
    assert (database.pings, chroma.pings) == (2, 2)
    database.up = False
    assert await server_problems(ctx) == []  # the clean one is, for the TTL
    assert (database.pings, chroma.pings) == (2, 2)
    assert await server_problems(ctx, ttl=0.0) == ["database does not answer"]
    assert (database.pings, chroma.pings) == (3, 3)


async def test_past_half_its_ttl_a_clean_answer_starts_the_next_check_without_waiting(monkeypatch) -> None:
    from ggstack.providers import health

    now = [100.0]
    monkeypatch.setattr(health, "monotonic", lambda: now[0])
    database, chroma = Down(), Down()
    database.up = chroma.up = True
    ctx = SimpleNamespace(health=None, metadata=database, vectors=chroma, models=SimpleNamespace(loaded=list),
                          settings=SimpleNamespace(health_ttl_s=1.0))
    assert await server_problems(ctx) == []
    assert database.pings == 1
    now[0] = 100.4  # younger than half the TTL: answered, nothing started
    assert await server_problems(ctx) == []
    await anyio.wait_all_tasks_blocked()
    assert database.pings == 1
    database.up = False
    now[0] = 100.7  # past half: answered at once, and the next check runs behind it
    assert await server_problems(ctx) == []
    await anyio.wait_all_tasks_blocked()
    assert database.pings == 2
    # that check found the database down, so it was not kept: the next probe checks and waits
    assert await server_problems(ctx) == ["database does not answer"]
    assert database.pings == 3
