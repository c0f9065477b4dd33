"""What the vector-store handlers share: lookups that raise the right error, and the shapes
of vector-store, file and batch objects built from their documents."""

from __future__ import annotations

import uuid
from typing import Any

from generated.models.llama_stack_deprecated import (
    VectorStoreFileBatchObject,
    VectorStoreFileCounts,
    VectorStoreFileObject,
    VectorStoreObject,
)
from ggstack.core import ids
from ggstack.core.context import Context
from ggstack.core.errors import NotFoundError
from ggstack.http.errors import InvalidRequest, NotFound
from ggstack.ingest import records
from ggstack.ingest.chunking import chunking_params
from ggstack.ingest.records import FILE_BATCH, VECTOR_STORE_FILE
from ggstack.ingest.worker import failure
from ggstack.stores.base import Order

DEFAULT_PAGE = 20

#: How long an attach (or a create with file_ids) waits for indexing before answering
#: `in_progress`. Llama Stack clients expect a finished file; OpenAI clients poll anyway.
ATTACH_WAIT_SECONDS = 20.0
#: Files one request may attach (a batch, or a store created with file_ids).
MAX_ATTACH_FILES = 2000


def distinct_file_ids(file_ids: list[str] | None) -> list[str]:
    """Each id once, in order, and no more than MAX_ATTACH_FILES of them."""
    distinct = list(dict.fromkeys(file_ids or []))
    if len(distinct) > MAX_ATTACH_FILES:
        raise InvalidRequest(f"at most {MAX_ATTACH_FILES} files can be attached at once", param="file_ids")
    return distinct


def list_order(order: str) -> Order:
    """`limit` is bounded by the spec and checked before a handler runs; `order` is a free
    string there, so it is checked here (an empty `order=` means the default)."""
    if order == "asc":
        return "asc"
    if order in ("desc", ""):
        return "desc"
    raise InvalidRequest(f"order must be 'asc' or 'desc', not {order!r}", param="order")


def cursor(value: str | None) -> str | None:
    """An empty `after=`/`before=` (the key sent with no value) means no cursor."""
    return value or None


def page_body(page: Any, data: list[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"object": "list", "data": data, "has_more": page.has_more}
    # Optional in these list schemas, and not nullable: left out when the page is empty.
    if page.first_id is not None:
        body["first_id"], body["last_id"] = page.first_id, page.last_id
    return body


async def active_store(ctx: Context, store_id: str) -> dict[str, Any]:
    """The store, refusing one that has expired (it can be read and deleted, not used)."""
    doc = await records.get_vector_store(ctx.metadata, store_id)
    if records.store_expired(doc):
        raise InvalidRequest(f"Vector store '{store_id}' has expired", param="vector_store_id")
    return doc


async def store_file(ctx: Context, store_id: str, file_id: str) -> dict[str, Any]:
    return await _in_store(ctx, store_id, VECTOR_STORE_FILE, file_id, "File", "file_id")


async def batch_doc(ctx: Context, store_id: str, batch_id: str) -> dict[str, Any]:
    return await _in_store(ctx, store_id, FILE_BATCH, batch_id, "File batch", "batch_id")


async def _in_store(ctx: Context, store_id: str, kind: str, child_id: str, what: str, param: str) -> dict[str, Any]:
    """A document kept under a vector store; an unknown store is named before an unknown child."""
    await records.get_vector_store(ctx.metadata, store_id)
    doc = await ctx.metadata.get(kind, child_id, parent=store_id)
    if doc is None:
        raise NotFound(f"{what} '{child_id}' not found in vector store '{store_id}'", param=param)
    return doc


def chunking_strategy(strategy: Any) -> dict[str, Any]:
    """The request's strategy, validated, in the shape file objects report it."""
    dump = getattr(strategy, "model_dump", None)
    if callable(dump):
        strategy = dump(exclude_none=True)
    size, overlap = chunking_params(strategy)
    if strategy is None or strategy.get("type", "auto") == "auto":
        return {"type": "auto"}
    return {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}


def new_file_doc(store_id: str, file: dict[str, Any], attributes: dict[str, Any], strategy: dict[str, Any],
                 batch_id: str | None = None) -> dict[str, Any]:
    """A file entering the store: `in_progress` is what queues it for the ingestion worker."""
    return {"id": file["id"], "object": "vector_store.file", "vector_store_id": store_id,
            "created_at": ids.now(), "attributes": attributes, "chunking_strategy": strategy,
            "status": "in_progress", "usage_bytes": 0, "filename": file["filename"], "batch_id": batch_id,
            "generation": uuid.uuid4().hex, "attempts": 0}


async def store_file_docs(ctx: Context, store_id: str, file_ids: list[str], attributes: dict[str, Any],
                          strategy: dict[str, Any], batch_id: str | None = None) -> list[dict[str, Any]]:
    """A document per file entering the store. A file id that names no file does not refuse the
    request (as in the reference and OpenAI): it enters the store already `failed`, with a
    `last_error` that says why, is counted as failed, and can be deleted like any other."""
    docs = []
    for file_id in file_ids:
        try:
            file = await records.get_file(ctx.metadata, ctx.files, file_id)
        except NotFoundError as missing:
            doc = new_file_doc(store_id, {"id": file_id, "filename": ""}, attributes, strategy, batch_id)
            docs.append({**doc, **failure(missing.message)})
        else:
            docs.append(new_file_doc(store_id, file, attributes, strategy, batch_id))
    return docs


async def store_object(ctx: Context, doc: dict[str, Any]) -> VectorStoreObject:
    counts = await records.file_counts(ctx.metadata, doc["id"])
    expires_at = records.store_expires_at(doc)
    if expires_at is not None and expires_at <= ids.now():
        status = "expired"
    else:
        status = "in_progress" if counts["in_progress"] else "completed"
    return VectorStoreObject(
        id=doc["id"], object="vector_store", created_at=doc["created_at"], name=doc.get("name"),
        usage_bytes=await records.usage_bytes(ctx.metadata, doc["id"]),
        file_counts=VectorStoreFileCounts(**counts), status=status, expires_after=doc.get("expires_after"),
        expires_at=expires_at, last_active_at=doc.get("last_active_at"), metadata=doc.get("metadata") or {})


def file_object(doc: dict[str, Any]) -> VectorStoreFileObject:
    return VectorStoreFileObject(
        id=doc["id"], object="vector_store.file", attributes=doc.get("attributes") or {},
        chunking_strategy=doc.get("chunking_strategy") or {"type": "auto"}, created_at=doc["created_at"],
        last_error=doc.get("last_error"), status=doc["status"], usage_bytes=int(doc.get("usage_bytes") or 0),
        vector_store_id=doc["vector_store_id"])


async def batch_object(ctx: Context, doc: dict[str, Any]) -> VectorStoreFileBatchObject:
    counts = await records.file_counts(ctx.metadata, doc["vector_store_id"], batch_id=doc["id"])
    if doc.get("cancelled"):
        status = "cancelled"
    elif counts["in_progress"]:
        status = "in_progress"
    elif counts["total"] and counts["failed"] == counts["total"]:
        status = "failed"
    else:
        status = "completed"
    return VectorStoreFileBatchObject(id=doc["id"], object="vector_store.file_batch", created_at=doc["created_at"],
                                      vector_store_id=doc["vector_store_id"], status=status,
                                      file_counts=VectorStoreFileCounts(**counts))
