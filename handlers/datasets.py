"""Datasets: registered sources of rows for evaluation and post-training."""

from __future__ import annotations

import uuid
from typing import Any

from generated.models.llama_stack_deprecated import RegisterDatasetRequest
from ggstack.core.context import Context
from ggstack.datasets.rows import ROW_KIND, add_rows, rows_from_source, rows_parent
from ggstack.http.errors import Conflict, NotFound

KIND = "dataset"
PROVIDER_ID = "localfs"


async def find_dataset(ctx: Context, dataset_id: str) -> dict[str, Any]:
    dataset = await ctx.metadata.get(KIND, dataset_id)
    if dataset is None:
        raise NotFound(f"Dataset '{dataset_id}' not found", param="dataset_id")
    return dataset


async def register_dataset(body: RegisterDatasetRequest, ctx: Context) -> dict[str, Any]:
    data = body.model_dump(mode="json", exclude_none=True)
    dataset_id = data.get("dataset_id") or f"dataset-{uuid.uuid4().hex[:12]}"
    if await ctx.metadata.get(KIND, dataset_id) is not None:
        raise Conflict(f"Dataset '{dataset_id}' already exists", param="dataset_id")
    rows = rows_from_source(data["source"])
    dataset = {"identifier": dataset_id, "provider_resource_id": dataset_id, "provider_id": PROVIDER_ID,
               "type": "dataset", "purpose": data["purpose"], "source": data["source"],
               "metadata": data.get("metadata", {})}
    stored = {**dataset, "readable": rows is not None, "rows_key": f"rows-{uuid.uuid4().hex}"}
    if rows:
        await add_rows(ctx.metadata, stored, rows)
    await ctx.metadata.put(KIND, dataset_id, stored)
    return dataset


async def list_datasets(ctx: Context) -> dict[str, Any]:
    page = await ctx.metadata.list(KIND, limit=None, order="asc")
    return {"data": [public(d) for d in page.items]}


async def get_dataset(dataset_id: str, ctx: Context) -> dict[str, Any]:
    return public(await find_dataset(ctx, dataset_id))


async def unregister_dataset(dataset_id: str, ctx: Context) -> None:
    dataset = await find_dataset(ctx, dataset_id)
    await ctx.metadata.delete_children(ROW_KIND, rows_parent(dataset))
    await ctx.metadata.delete(KIND, dataset_id)


def public(dataset: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dataset.items() if k not in ("readable", "rows_key")}
