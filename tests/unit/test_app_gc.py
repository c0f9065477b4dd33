"""While the app serves, start-up objects are frozen out of full GC collections; shutdown hands
them back so an earlier app in the same process can be freed."""

from __future__ import annotations

import gc

import pytest

from ggstack.http.app import frozen_startup_objects

pytestmark = pytest.mark.anyio


async def test_startup_objects_are_frozen_while_serving_and_released_after() -> None:
    survivor = [object() for _ in range(100)]
    assert gc.get_freeze_count() == 0
    async with frozen_startup_objects():
        assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_freeze_count() == 0
