"""Files in a vector store: attach, list, retrieve, update attributes, detach, read chunks.

Attaching queues the file for the ingestion worker and waits a while for it (see
ATTACH_WAIT_SECONDS); a file still indexing after that is returned `in_progress`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenaiAttachFileToVectorStoreRequest,
    OpenaiUpdateVectorStoreFileRequest,
    VectorStoreContent,
    VectorStoreFileContentsResponse,
    VectorStoreFileDeleteResponse,
    VectorStoreFileObject,
)
from ggstack.core.context import Context
from ggstack.core.errors import NotFoundError
from ggstack.http.errors import NotFound
from ggstack.ingest import records
from ggstack.ingest.records import VECTOR_STORE_FILE
from handlers.vector_stores.common import (
    ATTACH_WAIT_SECONDS,
    DEFAULT_PAGE,
    active_store,
    chunking_strategy,
    cursor,
    file_object,
    list_order,
    new_file_doc,
    page_body,
    store_file,
)


async def openai_attach_file_to_vector_store(vector_store_id: str, body: OpenaiAttachFileToVectorStoreRequest,
                                             ctx: Context) -> VectorStoreFileObject:
    await active_store(ctx, vector_store_id)
    attributes = records.validate_attributes(body.attributes)
    strategy = chunking_strategy(body.chunking_strategy)
    file = await records.get_file(ctx.metadata, ctx.files, body.file_id)
    doc = new_file_doc(vector_store_id, file, attributes, strategy)
    await ctx.metadata.put(VECTOR_STORE_FILE, file["id"], doc, parent=vector_store_id)
    await records.touch_store(ctx.metadata, vector_store_id)
    ctx.ingest.submit(vector_store_id, file["id"])
    final = await ctx.ingest.wait(vector_store_id, file["id"], ATTACH_WAIT_SECONDS)
    return file_object(final or doc)


async def openai_list_files_in_vector_store(vector_store_id: str, ctx: Context, limit: int = DEFAULT_PAGE,
                                            order: str = "desc", after: str | None = None,
                                            before: str | None = None, filter: str | None = None
                                            ) -> dict[str, Any]:
    order = list_order(order)
    await records.get_vector_store(ctx.metadata, vector_store_id)
    page = await ctx.metadata.list(VECTOR_STORE_FILE, parent=vector_store_id, after=cursor(after),
                                   before=cursor(before), limit=limit, order=order, where={"status": filter} if filter else None)
    return page_body(page, [file_object(doc) for doc in page.items])


async def openai_retrieve_vector_store_file(vector_store_id: str, file_id: str, ctx: Context
                                            ) -> VectorStoreFileObject:
    return file_object(await store_file(ctx, vector_store_id, file_id))


async def openai_update_vector_store_file(vector_store_id: str, file_id: str,
                                          body: OpenaiUpdateVectorStoreFileRequest,
                                          ctx: Context) -> VectorStoreFileObject:
    await store_file(ctx, vector_store_id, file_id)
    attributes = records.validate_attributes(body.attributes)
    doc = await ctx.metadata.update(VECTOR_STORE_FILE, file_id, {"attributes": attributes}, parent=vector_store_id)
    if doc is None:
        raise NotFound(f"File '{file_id}' not found in vector store '{vector_store_id}'", param="file_id")
    # A file still indexing gets the new attributes from the worker when it finishes.
    if doc["status"] == "completed":
        await ctx.vectors.set_file_attributes(vector_store_id, file_id, attributes)
    return file_object(doc)


async def openai_delete_vector_store_file(vector_store_id: str, file_id: str, ctx: Context
                                          ) -> VectorStoreFileDeleteResponse:
    await store_file(ctx, vector_store_id, file_id)
    await ctx.metadata.delete(VECTOR_STORE_FILE, file_id, parent=vector_store_id)
    # A job indexing this file right now removes its own chunks when it sees the record gone.
    with contextlib.suppress(NotFoundError):
        await ctx.vectors.delete_file(vector_store_id, file_id)
    return VectorStoreFileDeleteResponse(id=file_id, object="vector_store.file.deleted", deleted=True)


async def openai_retrieve_vector_store_file_contents(vector_store_id: str, file_id: str, ctx: Context
                                                     ) -> VectorStoreFileContentsResponse:
    doc = await store_file(ctx, vector_store_id, file_id)
    chunks = await ctx.vectors.file_chunks(vector_store_id, file_id)
    return VectorStoreFileContentsResponse(
        file_id=file_id, filename=doc.get("filename") or file_id, attributes=doc.get("attributes") or {},
        content=[VectorStoreContent(type="text", text=chunk.text) for chunk in chunks])
