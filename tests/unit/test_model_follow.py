"""Replicas: the registry follows the registrations in the database (ModelRegistry.refresh)."""

from __future__ import annotations

import pytest

from ggstack.core.errors import NotFoundError
from ggstack.engines.registry import ModelRegistry, ModelSpec

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_model_registered_here_and_unregistered_elsewhere_at_once_is_forgotten(tiny_chat_gguf):
    rows: list[ModelSpec] = []

    async def stored() -> list[ModelSpec]:
        return list(rows)

    registry = ModelRegistry()
    registry.follow(stored, live=True)
    await registry.refresh()
    spec = registry.register(ModelSpec(identifier="t", path=tiny_chat_gguf, model_type="llm"))
    rows.append(spec)
    registry.persisted("t")  # the handler stored it; another replica deletes the row before any refresh here
    rows.clear()
    await registry.refresh()
    with pytest.raises(NotFoundError):
        registry.get("t")
