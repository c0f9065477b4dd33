"""DatasetIO: read a dataset's rows page by page, and append to them."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_deprecated import AppendRowsRequest
from ggstack.core.context import Context
from ggstack.datasets.rows import ROW_KIND, row_id
from ggstack.http.errors import InvalidRequest
from handlers.datasets import find_dataset


async def readable_dataset(ctx: Context, dataset_id: str) -> dict[str, Any]:
    dataset = await find_dataset(ctx, dataset_id)
    if not dataset.get("readable", True):
        raise InvalidRequest(f"Rows of dataset '{dataset_id}' live at {dataset['source'].get('uri')}, "
                             "which this server cannot read; register the rows or a data: URI instead",
                             param="dataset_id")
    return dataset


async def iterrows(dataset_id: str, ctx: Context, start_index: int | None = None,
                   limit: int | None = None) -> dict[str, Any]:
    """`limit` -1 (or absent) means every row from `start_index` on, as upstream does."""
    await readable_dataset(ctx, dataset_id)
    start = max(start_index or 0, 0)
    rows = (await ctx.metadata.list(ROW_KIND, parent=dataset_id, limit=None, order="asc")).items
    end = len(rows) if limit is None or limit < 0 else start + limit
    return {"data": rows[start:end], "has_more": end < len(rows)}


async def append_rows(dataset_id: str, body: AppendRowsRequest, ctx: Context) -> None:
    await readable_dataset(ctx, dataset_id)
    count = await ctx.metadata.count(ROW_KIND, parent=dataset_id)
    rows = body.model_dump(mode="json")["rows"]
    await ctx.metadata.put_many(ROW_KIND, [(row_id(count + i), row) for i, row in enumerate(rows)],
                                parent=dataset_id)
