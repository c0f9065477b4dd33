"""Vector IO: insert chunks into a vector DB and query them back.

A vector DB is a vector store (handlers/vector_dbs.py), so `query` also finds the chunks of
files attached through /v1/vector_stores, and vector-store search finds inserted chunks.
An inserted chunk keeps the client's whole chunk (content, metadata of any shape,
chunk_metadata) and its id; its scalar metadata are also copied to chunk attributes, so
vector-store search filters see them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from pydantic_core import to_jsonable_python

from generated.models.llama_stack_stable import InsertChunksRequest, QueryChunksRequest, QueryChunksResponse
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.ingest.pipeline import embed_texts
from ggstack.ingest.records import RESERVED_ATTRIBUTE_PREFIX
from ggstack.stores.base import Chunk, Hit
from handlers.vector_stores.common import active_store

#: The limits (1000 chunks per insert, max_chunks 1-50) and the params' shape are in the
#: stable overlay, so the request is checked against them before this runs.
DEFAULT_CHUNKS = 3
DEFAULT_IMPACT_FACTOR = 60.0


def content_text(content: Any, param: str) -> str:
    """The text of InterleavedContent (a string, a text item, or a list of items); images are refused."""
    items = content if isinstance(content, list) else [content]
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        elif item.get("type") == "text":
            parts.append(item["text"])
        else:
            raise InvalidRequest(f"Invalid value: {param}: only text content can be embedded here, not "
                                 f"{item.get('type')}", param=param)
    return "\n".join(parts)


def chunk_id_of(chunk: dict[str, Any], text: str) -> str:
    """The client's id if it gave one, else one derived from document and text (re-inserting replaces)."""
    given = (chunk.get("chunk_metadata") or {}).get("chunk_id") or chunk.get("stored_chunk_id")
    if given:
        return str(given)
    document = str(chunk["metadata"].get("document_id", ""))
    return str(uuid.UUID(hashlib.sha256(f"{document}:{text}".encode()).hexdigest()[:32]))


def scalar_attributes(metadata: dict[str, Any]) -> dict[str, str | int | float | bool]:
    return {key: value for key, value in metadata.items()
            if isinstance(value, str | int | float | bool) and not key.startswith(RESERVED_ATTRIBUTE_PREFIX)
            and not key.startswith(("$", "#")) and key.isprintable()}


async def insert_chunks(body: InsertChunksRequest, ctx: Context) -> None:
    store = await active_store(ctx, body.vector_db_id)
    raw = [chunk.model_dump(mode="json", exclude_none=True) for chunk in body.chunks]
    texts = [content_text(chunk["content"], f"chunks[{i}].content") for i, chunk in enumerate(raw)]
    missing = [i for i, chunk in enumerate(raw) if "embedding" not in chunk]
    if missing:
        engine = await ctx.models.embedder(store["embedding_model"])
        for i, vector in zip(missing, await embed_texts(engine, [texts[i] for i in missing])):
            raw[i]["embedding"] = vector
    chunks = []
    for i, (chunk, text) in enumerate(zip(raw, texts)):
        if len(chunk["embedding"]) != store["embedding_dimension"]:
            raise InvalidRequest(f"Invalid value: chunks[{i}].embedding has {len(chunk['embedding'])} dimensions; vector DB "
                                 f"'{body.vector_db_id}' holds {store['embedding_dimension']}",
                                 param=f"chunks[{i}].embedding")
        chunk_id = chunk_id_of(chunk, text)
        source = {k: v for k, v in chunk.items() if k not in ("embedding", "stored_chunk_id")}
        chunks.append(Chunk(file_id=str(chunk["metadata"].get("document_id", "")), index=i, text=text,
                            embedding=chunk["embedding"], attributes=scalar_attributes(chunk["metadata"]),
                            chunk_id=chunk_id, source=json.dumps(source)))
    await ctx.vectors.upsert_chunks(body.vector_db_id, chunks)


def query_params(params: dict[str, Any] | None) -> tuple[int, float, str, dict[str, Any]]:
    """(max_chunks, score_threshold, mode, ranker keywords) from params the schema has checked."""
    params = params or {}
    ranker = params.get("ranker") or {"type": "rrf"}
    if ranker["type"] == "rrf":
        options = {"ranker": "rrf", "impact_factor": float(ranker.get("impact_factor", DEFAULT_IMPACT_FACTOR))}
    else:
        options = {"ranker": "weighted", "alpha": float(ranker.get("alpha", 0.5))}
    return (params.get("max_chunks", DEFAULT_CHUNKS), float(params.get("score_threshold", 0.0)),
            params.get("mode", "vector"), options)


def answer_chunk(hit: Hit) -> dict[str, Any]:
    """The client's own chunk back, or a file chunk in the same shape (its file as document)."""
    chunk = hit.chunk
    if chunk.source is not None:
        return {**json.loads(chunk.source), "stored_chunk_id": chunk.id}
    return {"content": chunk.text, "metadata": {"document_id": chunk.file_id, **chunk.attributes},
            "stored_chunk_id": chunk.id,
            "chunk_metadata": {"chunk_id": chunk.id, "document_id": chunk.file_id}}


async def query_chunks(body: QueryChunksRequest, ctx: Context) -> QueryChunksResponse:
    store = await active_store(ctx, body.vector_db_id)
    query = content_text(to_jsonable_python(body.query), "query")
    if not query.strip():
        raise InvalidRequest("Invalid value: query must not be empty", param="query")
    params = body.params.model_dump(mode="json", exclude_none=True) if body.params else None
    k, threshold, mode, ranker = query_params(params)
    if mode == "keyword":
        hits = await ctx.vectors.keyword(body.vector_db_id, query, k=k)
    else:
        engine = await ctx.models.embedder(store["embedding_model"])
        [embedding] = await embed_texts(engine, [query])
        if mode == "vector":
            hits = await ctx.vectors.query(body.vector_db_id, embedding, k=k)
        else:
            hits = await ctx.vectors.hybrid(body.vector_db_id, embedding, query, k=k, **ranker)
    kept = [hit for hit in hits if hit.score >= threshold]
    return QueryChunksResponse.model_validate({"chunks": [answer_chunk(hit) for hit in kept],
                                               "scores": [hit.score for hit in kept]})
