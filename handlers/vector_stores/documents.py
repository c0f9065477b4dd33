"""Documents into a vector store as files: what turn `documents` and RAG-tool insert share.

Each document becomes an uploaded file (so it can be listed, read back and deleted like any
other) attached to the store, which indexes it with the store's embedding model. Content may
be text, text content items, or a URL: a `data:` URL is decoded; any other URL would need
the network, which this server does not use, so it is a 400 naming the document.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from generated.models.llama_stack_deprecated import (
    OpenaiAttachFileToVectorStoreRequest,
    OpenaiCreateVectorStoreRequest,
)
from ggstack.core import ids
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.inference.legacy import content_text
from ggstack.ingest.records import FILE
from handlers.vector_stores.common import active_store
from handlers.vector_stores.files import openai_attach_file_to_vector_store
from handlers.vector_stores.stores import openai_create_vector_store

TEXT_TYPES = {"text/plain": ".txt", "text/markdown": ".md", "text/html": ".html", "application/json": ".json",
              "text/csv": ".csv", "application/pdf": ".pdf"}


def document_bytes(content: Any, param: str) -> tuple[bytes, str | None]:
    """(bytes, media type found in a data URL) of a document's `content`."""
    uri = content.get("uri") if isinstance(content, Mapping) and "uri" in content else None
    if isinstance(content, str) and content.startswith(("http://", "https://", "data:")):
        uri = content
    if uri is None:
        return content_text(content, param=param).encode("utf-8"), None
    if not uri.startswith("data:"):
        raise InvalidRequest(f"{param} is a URL ({uri[:80]}); fetching it would need the network, which this "
                             "server does not use: send the text, a data: URL, or upload it as a file", param=param)
    header, _, data = uri[5:].partition(",")
    try:
        raw = base64.b64decode(data, validate=True) if header.endswith(";base64") else unquote_to_bytes(data)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param} is a data: URL whose data is not valid base64", param=param) from None
    return raw, header.removesuffix(";base64").split(";", 1)[0] or None


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def save_file(ctx: Context, data: bytes, filename: str, content_type: str) -> str:
    blob = await ctx.files.save(_one(data), max_bytes=ctx.settings.max_upload_bytes)
    doc: dict[str, Any] = {"id": ids.new_id("file-"), "object": "file", "bytes": blob.size, "created_at": ids.now(),
           "expires_at": None, "filename": filename, "purpose": "assistants", "content_type": content_type,
           "key": blob.key, "sha256": blob.sha256}
    await ctx.metadata.put(FILE, doc["id"], doc)
    return doc["id"]


async def attach(ctx: Context, store_id: str, file_id: str, attributes: Mapping[str, Any],
                 chunk_size_tokens: int | None = None) -> None:
    strategy = None
    if chunk_size_tokens:
        strategy = {"type": "static", "static": {"max_chunk_size_tokens": chunk_size_tokens,
                                                 "chunk_overlap_tokens": min(400, chunk_size_tokens // 4)}}
    result = await openai_attach_file_to_vector_store(
        store_id, OpenaiAttachFileToVectorStoreRequest(file_id=file_id, attributes=dict(attributes),
                                                       chunking_strategy=strategy), ctx)
    if result.status == "failed":
        reason = result.last_error.message if result.last_error else "indexing failed"
        raise InvalidRequest(f"document {attributes.get('document_id')} could not be indexed: {reason}",
                             param="documents")


async def insert_documents(ctx: Context, store_id: str, documents: Sequence[Mapping[str, Any]], *,
                           param: str = "documents", chunk_size_tokens: int | None = None) -> list[str]:
    """Index each document in the store; returns their document ids. All are read before any is saved."""
    await active_store(ctx, store_id)  # an unknown store is the first thing wrong
    prepared = []
    for i, document in enumerate(documents):
        data, found_type = document_bytes(document["content"], f"{param}[{i}].content")
        mime = document.get("mime_type") or found_type or "text/plain"
        document_id = str(document.get("document_id") or f"doc-{i}-{ids.new_id('')}")
        attributes: dict[str, str | int | float | bool] = {"document_id": document_id}
        for key, value in (document.get("metadata") or {}).items():
            if isinstance(value, str | int | float | bool):
                attributes[key] = value
        prepared.append((data, mime, document_id, attributes))
    for data, mime, document_id, attributes in prepared:
        file_id = await save_file(ctx, data, f"{document_id}{TEXT_TYPES.get(mime, '.txt')}", mime)
        await attach(ctx, store_id, file_id, attributes, chunk_size_tokens)
    return [p[2] for p in prepared]


async def new_store(ctx: Context, name: str) -> str:
    store = await openai_create_vector_store(OpenaiCreateVectorStoreRequest(name=name), ctx)
    return store.id
