"""Datasets: registered sources of rows for evaluation and post-training."""

from __future__ import annotations

import uuid
from typing import Any

from generated.models.llama_stack_deprecated import RegisterDatasetRequest
from ggstack.core.context import Context
from ggstack.datasets import records
from ggstack.datasets.records import KIND, public
from ggstack.datasets.rows import ROW_KIND, rows_from_source, rows_parent
from ggstack.http.errors import NotFound


async def find_dataset(ctx: Context, dataset_id: str) -> dict[str, Any]:
    dataset = await ctx.metadata.get(KIND, dataset_id)
    if dataset is None:
        raise NotFound(f"Dataset '{dataset_id}' not found", param="dataset_id")
    return dataset


async def register_dataset(body: RegisterDatasetRequest, ctx: Context) -> dict[str, Any]:
    data = body.model_dump(mode="json", exclude_none=True)
    dataset_id = data.get("dataset_id") or f"dataset-{uuid.uuid4().hex[:12]}"
    return await records.create(ctx.metadata, dataset_id, purpose=data["purpose"], source=data["source"],
                                rows=rows_from_source(data["source"]), extra=data.get("metadata", {}))


async def list_datasets(ctx: Context) -> dict[str, Any]:
    page = await ctx.metadata.list(KIND, limit=None, order="asc")
    return {"data": [public(d) for d in page.items]}


async def get_dataset(dataset_id: str, ctx: Context) -> dict[str, Any]:
    return public(await find_dataset(ctx, dataset_id))


async def unregister_dataset(dataset_id: str, ctx: Context) -> None:
    dataset = await find_dataset(ctx, dataset_id)
    await ctx.metadata.delete_children(ROW_KIND, rows_parent(dataset))
    await ctx.metadata.delete(KIND, dataset_id)
