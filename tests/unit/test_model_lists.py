"""The OpenAI model list is kept rendered between changes, and still follows them: a registration
at once, a replaced model file (its time is the list's `created`) within two MTIME_TTL_S, without
looking at the files on every request."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import ggstack.http.render
import handlers.models
from ggstack.engines.registry import ModelSpec
from handlers.models import MTIME_TTL_S, openai_list_models

pytestmark = pytest.mark.anyio


class Registry:
    """What the list reads of the model registry: its specs and its version."""

    def __init__(self, *specs: ModelSpec) -> None:
        self.specs = list(specs)
        self.version = 0

    def list(self) -> list[ModelSpec]:
        return list(self.specs)

    def register(self, spec: ModelSpec) -> None:
        self.specs.append(spec)
        self.version += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(ggstack.http.render, "monotonic", clock)
    monkeypatch.setattr(handlers.models, "monotonic", clock)
    return clock


async def listed(ctx: SimpleNamespace) -> dict[str, int]:
    """id -> created, from the answer's bytes."""
    answer = json.loads((await openai_list_models(ctx)).body)
    return {model["id"]: model["created"] for model in answer["data"]}


async def test_the_list_follows_registrations_at_once_and_file_times_within_two_ttls(
        tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first.gguf", tmp_path / "second.gguf"
    for path in (first, second):
        path.write_bytes(b"GGUF")
        os.utime(path, (1_600_000_000, 1_600_000_000))
    registry = Registry(ModelSpec(identifier="first", path=first))
    ctx = SimpleNamespace(models=registry, rendered={})
    assert await listed(ctx) == {"first": 1_600_000_000}

    stats: list[object] = []
    real_stat = os.stat
    monkeypatch.setattr(handlers.models.os, "stat", lambda path, *a, **k: stats.append(path) or real_stat(path, *a, **k))
    os.utime(first, (1_700_000_000, 1_700_000_000))  # the file replaced
    for _ in range(3):
        assert await listed(ctx) == {"first": 1_600_000_000}  # kept, and no file looked at
    assert stats == []

    registry.register(ModelSpec(identifier="second", path=second))  # seen at once
    assert list(await listed(ctx)) == ["first", "second"]

    clock.now += 2 * MTIME_TTL_S
    assert await listed(ctx) == {"first": 1_700_000_000, "second": 1_600_000_000}
