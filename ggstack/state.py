"""Open and close the long-lived parts (engines, stores) around the app's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ggstack.config import Settings
from ggstack.context import Context
from ggstack.operations import Operation

log = logging.getLogger("ggstack.state")


@asynccontextmanager
async def open_context(settings: Settings, operations: tuple[Operation, ...],
                       missing: frozenset[str]) -> AsyncIterator[Context]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(settings=settings, operations=operations, missing=missing)
    try:
        yield ctx
    finally:
        log.info("ggstack stopped")
