"""Dataset records: one document per dataset (kind "dataset"), its rows kept apart (rows.py).

The datasets API registers them; scoring writes its results as a new one through `create`.
"""

from __future__ import annotations

import uuid
from typing import Any

from ggstack.core.errors import AlreadyExistsError, NotFoundError
from ggstack.datasets.rows import add_rows

KIND = "dataset"
PROVIDER_ID = "localfs"
#: Kept in the stored record, never shown: whether the rows are here, and where.
PRIVATE = ("readable", "rows_key")


async def find(metadata: Any, dataset_id: str) -> dict[str, Any]:
    dataset = await metadata.get(KIND, dataset_id)
    if dataset is None:
        raise NotFoundError(f"Dataset '{dataset_id}' not found", kind=KIND, identifier=dataset_id)
    return dataset


async def create(metadata: Any, dataset_id: str, *, purpose: str, source: dict[str, Any],
                 rows: list[dict[str, Any]] | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a dataset and its rows (`rows` None: they live at a URI this server cannot read)."""
    if await metadata.get(KIND, dataset_id) is not None:
        raise AlreadyExistsError(f"Dataset '{dataset_id}' already exists")
    dataset = {"identifier": dataset_id, "provider_resource_id": dataset_id, "provider_id": PROVIDER_ID,
               "type": "dataset", "purpose": purpose, "source": source, "metadata": extra or {}}
    stored = {**dataset, "readable": rows is not None, "rows_key": f"rows-{uuid.uuid4().hex}"}
    if rows:
        await add_rows(metadata, stored, rows)
    await metadata.put(KIND, dataset_id, stored)
    return dataset


def public(dataset: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dataset.items() if k not in PRIVATE}
