"""Vector stores: create, list, retrieve, update, delete.

A store's embedding model is fixed at creation (the first registered embedding model
unless `embedding_model` names one); its Chroma index is made with that model's dimension.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenaiCreateVectorStoreRequest,
    OpenaiUpdateVectorStoreRequest,
    VectorStoreDeleteResponse,
    VectorStoreObject,
)
from ggstack.core import ids
from ggstack.core.context import Context
from ggstack.core.errors import NotFoundError
from ggstack.http.errors import InvalidRequest
from ggstack.ingest import records
from ggstack.ingest.records import FILE_BATCH, VECTOR_STORE, VECTOR_STORE_FILE
from handlers.vector_stores.common import (
    ATTACH_WAIT_SECONDS,
    DEFAULT_PAGE,
    chunking_strategy,
    cursor,
    distinct_file_ids,
    list_order,
    page_body,
    store_file_docs,
    store_object,
)

PROVIDER_ID = "chromadb"


def embedding_model(ctx: Context, requested: str | None, dimension: int | None) -> tuple[str, int]:
    """(model id, dimension) for a new store."""
    if requested is None:
        candidates = [spec for spec in ctx.models.list() if spec.model_type == "embedding"]
        if not candidates:
            raise InvalidRequest("No embedding model is registered; register one or name it in "
                                 "embedding_model", param="embedding_model")
        spec = candidates[0]
    else:
        spec = ctx.models.get(requested)
        if spec.model_type != "embedding":
            raise InvalidRequest(f"Model '{requested}' is not an embedding model", param="embedding_model")
    model_dimension = int(spec.embedding_dimension or spec.metadata["embedding_dimension"])
    if dimension is not None and dimension != model_dimension:
        raise InvalidRequest(f"Invalid value: embedding_dimension {dimension} does not match model '{spec.identifier}', "
                             f"which makes {model_dimension}-dimensional embeddings", param="embedding_dimension")
    return spec.identifier, model_dimension


async def create_store(ctx: Context, store_id: str, *, name: str | None, model: str, dimension: int,
                       strategy: dict[str, Any] | None = None, expires_after: dict[str, Any] | None = None,
                       metadata: dict[str, Any] | None = None,
                       provider_resource_id: str | None = None) -> dict[str, Any]:
    """The Chroma index and the store record; a vector DB (vector-dbs) is made the same way
    (its `provider_vector_db_id` kept as `provider_resource_id` when it is not the id)."""
    # The index first: a crash before the record is written leaves only an unused collection.
    await ctx.vectors.create(store_id, dimension=dimension)
    stamp = ids.now()
    doc = {"id": store_id, "object": "vector_store", "created_at": stamp, "name": name,
           "metadata": metadata or {}, "expires_after": expires_after, "last_active_at": stamp,
           "embedding_model": model, "embedding_dimension": dimension,
           "chunking_strategy": strategy or chunking_strategy(None), "provider_id": PROVIDER_ID,
           "provider_resource_id": provider_resource_id if provider_resource_id != store_id else None}
    doc = {k: v for k, v in doc.items() if v is not None}
    await ctx.metadata.put(VECTOR_STORE, store_id, doc)
    return doc


async def delete_store(ctx: Context, store_id: str) -> None:
    """Index, then children, then the record: each step is safe to repeat, so a delete that
    was interrupted can simply be sent again."""
    try:
        await ctx.vectors.drop(store_id)
    except NotFoundError:
        pass
    await ctx.metadata.delete_children(VECTOR_STORE_FILE, store_id)
    await ctx.metadata.delete_children(FILE_BATCH, store_id)
    await ctx.metadata.delete(VECTOR_STORE, store_id)


async def openai_create_vector_store(body: OpenaiCreateVectorStoreRequest, ctx: Context) -> VectorStoreObject:
    if body.provider_id and body.provider_id != PROVIDER_ID:
        raise InvalidRequest(f"Invalid value: provider_id '{body.provider_id}' is not a vector_io provider here; "
                             f"this server has '{PROVIDER_ID}'", param="provider_id")
    model, dimension = embedding_model(ctx, body.embedding_model, body.embedding_dimension)
    strategy = chunking_strategy(body.chunking_strategy)
    expires_after = records.validate_store_expiry(body.expires_after)
    metadata = records.validate_metadata(body.metadata)
    file_ids = distinct_file_ids(body.file_ids)
    store_id = ids.new_id("vs_")
    docs = await store_file_docs(ctx, store_id, file_ids, {}, strategy)
    await create_store(ctx, store_id, name=body.name, model=model, dimension=dimension, strategy=strategy,
                       expires_after=expires_after, metadata=metadata)
    if docs:
        await ctx.metadata.put_many(VECTOR_STORE_FILE, [(doc["id"], doc) for doc in docs], parent=store_id)
        queued = [doc["id"] for doc in docs if doc["status"] == "in_progress"]
        for file_id in queued:
            ctx.ingest.submit(store_id, file_id)
        deadline = time.monotonic() + ATTACH_WAIT_SECONDS
        await asyncio.gather(*(ctx.ingest.wait(store_id, file_id, max(0.0, deadline - time.monotonic()))
                               for file_id in queued))
    return await store_object(ctx, await records.get_vector_store(ctx.metadata, store_id))


async def openai_list_vector_stores(ctx: Context, limit: int = DEFAULT_PAGE, order: str = "desc",
                                    after: str | None = None, before: str | None = None) -> dict[str, Any]:
    order = list_order(order)
    page = await ctx.metadata.list(VECTOR_STORE, after=cursor(after), before=cursor(before), limit=limit,
                                   order=order)
    data = [await store_object(ctx, doc) for doc in page.items]
    return page_body(page, data)


async def openai_retrieve_vector_store(vector_store_id: str, ctx: Context) -> VectorStoreObject:
    return await store_object(ctx, await records.get_vector_store(ctx.metadata, vector_store_id))


async def openai_update_vector_store(vector_store_id: str, body: OpenaiUpdateVectorStoreRequest,
                                     ctx: Context) -> VectorStoreObject:
    await records.get_vector_store(ctx.metadata, vector_store_id)
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.metadata is not None:
        changes["metadata"] = records.validate_metadata(body.metadata)
    if "expires_after" in body.model_fields_set:
        # An explicit null removes the expiry policy.
        changes["expires_after"] = records.validate_store_expiry(body.expires_after)
    changes["last_active_at"] = ids.now()

    def change(doc: dict[str, Any]) -> None:
        doc.update(changes)
        if doc.get("expires_after") is None:
            doc.pop("expires_after", None)

    doc = await ctx.metadata.update(VECTOR_STORE, vector_store_id, change)
    if doc is None:
        raise records.store_not_found(vector_store_id)
    return await store_object(ctx, doc)


async def openai_delete_vector_store(vector_store_id: str, ctx: Context) -> VectorStoreDeleteResponse:
    await records.get_vector_store(ctx.metadata, vector_store_id)
    await delete_store(ctx, vector_store_id)
    return VectorStoreDeleteResponse(id=vector_store_id, object="vector_store.deleted", deleted=True)
