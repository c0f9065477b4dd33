"""DatasetIO: read a dataset's rows page by page, and append to them."""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_deprecated import AppendRowsRequest
from ggstack.core.context import Context
from ggstack.datasets.rows import ROW_KIND, add_rows, rows_parent
from ggstack.http.errors import InvalidRequest
from handlers.datasets import find_dataset

#: Rows one iterrows answer holds at most, whatever `limit` asks.
MAX_ROWS_PER_PAGE = 10_000


async def readable_dataset(ctx: Context, dataset_id: str) -> dict[str, Any]:
    dataset = await find_dataset(ctx, dataset_id)
    if not dataset.get("readable", True):
        # Valid request, unusable data behind it: the house rule's "Invalid value" 400.
        raise InvalidRequest(f"Invalid value: rows of dataset '{dataset_id}' live at "
                             f"{dataset['source'].get('uri')!r}, which this server cannot read; register the "
                             "rows or a data: URI instead", param="dataset_id")
    return dataset


async def iterrows(dataset_id: str, ctx: Context, start_index: int | None = None,
                   limit: int | None = None) -> dict[str, Any]:
    """`limit` -1 (or absent) means every row from `start_index` on, as upstream does, up to
    MAX_ROWS_PER_PAGE; `has_more` then says to ask again. Only the page is read from the store."""
    dataset = await readable_dataset(ctx, dataset_id)
    parent = rows_parent(dataset)
    start = max(start_index or 0, 0)
    size = MAX_ROWS_PER_PAGE if limit is None or limit < 0 else min(limit, MAX_ROWS_PER_PAGE)
    if size == 0:
        return {"data": [], "has_more": start < await ctx.metadata.count(ROW_KIND, parent=parent)}
    page = await ctx.metadata.list(ROW_KIND, parent=parent, limit=size, order="asc", offset=start)
    return {"data": page.items, "has_more": page.has_more}


async def append_rows(dataset_id: str, body: AppendRowsRequest, ctx: Context) -> None:
    dataset = await readable_dataset(ctx, dataset_id)
    await add_rows(ctx.metadata, dataset, body.model_dump(mode="json")["rows"])
