"""File batches: many files attached at once and indexed in the background.

A batch's counts and status come from its files (each carries the batch id), so they
show real progress. Cancelling stops the files not yet started; one being indexed finishes.
"""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenaiCreateVectorStoreFileBatchRequest,
    VectorStoreFileBatchObject,
)
from ggstack.core import ids
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.ingest import records
from ggstack.ingest.records import FILE_BATCH, VECTOR_STORE_FILE
from handlers.vector_stores.common import (
    DEFAULT_PAGE,
    active_store,
    batch_doc,
    batch_object,
    chunking_strategy,
    cursor,
    distinct_file_ids,
    file_object,
    list_order,
    page_body,
    store_file_docs,
)


async def openai_create_vector_store_file_batch(vector_store_id: str, body: OpenaiCreateVectorStoreFileBatchRequest,
                                                ctx: Context) -> VectorStoreFileBatchObject:
    await active_store(ctx, vector_store_id)
    file_ids = distinct_file_ids(body.file_ids)
    if not file_ids:
        raise InvalidRequest("file_ids must name at least one file", param="file_ids")
    attributes = records.validate_attributes(body.attributes)
    strategy = chunking_strategy(body.chunking_strategy)
    batch_id = ids.new_id("vsfb_")
    docs = await store_file_docs(ctx, vector_store_id, file_ids, attributes, strategy, batch_id)
    # Files first: if the server dies before the batch record exists, the files are still
    # indexed on restart, and the client (who got no answer) never saw the batch.
    await ctx.metadata.put_many(VECTOR_STORE_FILE, [(file_doc["id"], file_doc) for file_doc in docs],
                                parent=vector_store_id)
    doc = {"id": batch_id, "object": "vector_store.file_batch", "vector_store_id": vector_store_id,
           "created_at": ids.now(), "file_ids": file_ids, "cancelled": False}
    await ctx.metadata.put(FILE_BATCH, batch_id, doc, parent=vector_store_id)
    await records.touch_store(ctx.metadata, vector_store_id)
    for file_doc in docs:
        if file_doc["status"] == "in_progress":
            ctx.ingest.submit(vector_store_id, file_doc["id"])
    return await batch_object(ctx, doc)


async def openai_retrieve_vector_store_file_batch(batch_id: str, vector_store_id: str,
                                                  ctx: Context) -> VectorStoreFileBatchObject:
    return await batch_object(ctx, await batch_doc(ctx, vector_store_id, batch_id))


async def openai_cancel_vector_store_file_batch(batch_id: str, vector_store_id: str,
                                                ctx: Context) -> VectorStoreFileBatchObject:
    doc = await batch_doc(ctx, vector_store_id, batch_id)
    current = await batch_object(ctx, doc)
    if current.status not in ("in_progress", "cancelled"):
        raise InvalidRequest(f"File batch '{batch_id}' is {current.status} and cannot be cancelled",
                             param="batch_id")
    await ctx.ingest.cancel_batch(vector_store_id, batch_id)
    return await batch_object(ctx, await batch_doc(ctx, vector_store_id, batch_id))


async def openai_list_files_in_vector_store_file_batch(batch_id: str, vector_store_id: str, ctx: Context,
                                                       after: str | None = None, before: str | None = None,
                                                       filter: str | None = None, limit: int = DEFAULT_PAGE,
                                                       order: str = "desc") -> dict[str, Any]:
    order = list_order(order)
    await batch_doc(ctx, vector_store_id, batch_id)
    where: dict[str, Any] = {"batch_id": batch_id}
    if filter is not None:
        if filter not in records.STATUSES:
            raise InvalidRequest(f"filter must be one of {', '.join(records.STATUSES)}", param="filter")
        where["status"] = filter
    page = await ctx.metadata.list(VECTOR_STORE_FILE, parent=vector_store_id, after=cursor(after),
                                   before=cursor(before), limit=limit, order=order, where=where)
    return page_body(page, [file_object(doc) for doc in page.items])
