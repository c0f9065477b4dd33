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

from generated.models.llama_stack_stable import InsertChunksRequest, QueryChunksRequest, QueryChunksResponse
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.ingest.pipeline import embed_texts
from ggstack.ingest.records import RESERVED_ATTRIBUTE_PREFIX
from ggstack.stores.base import Chunk, Hit
from handlers.vector_stores.common import active_store

#: Chunks one insert may carry; larger sets are sent in several requests.
MAX_INSERT_CHUNKS = 1000
#: query params: max_chunks is 1..MAX_CHUNKS (3 when absent, as in the reference server).
DEFAULT_CHUNKS = 3
MAX_CHUNKS = 50
MODES = ("vector", "keyword", "hybrid")
QUERY_PARAMS = ("max_chunks", "score_threshold", "mode", "ranker")
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
            raise InvalidRequest(f"{param}: only text content can be embedded here, not {item.get('type')}",
                                 param=param)
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
    if body.ttl_seconds is not None:
        raise InvalidRequest("ttl_seconds is not supported: chunks stay until they or their vector DB are deleted",
                             param="ttl_seconds")
    if len(body.chunks) > MAX_INSERT_CHUNKS:
        raise InvalidRequest(f"at most {MAX_INSERT_CHUNKS} chunks per insert", param="chunks")
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
            raise InvalidRequest(f"chunks[{i}].embedding has {len(chunk['embedding'])} dimensions; vector DB "
                                 f"'{body.vector_db_id}' holds {store['embedding_dimension']}",
                                 param=f"chunks[{i}].embedding")
        chunk_id = chunk_id_of(chunk, text)
        source = {k: v for k, v in chunk.items() if k not in ("embedding", "stored_chunk_id")}
        chunks.append(Chunk(file_id=str(chunk["metadata"].get("document_id", "")), index=i, text=text,
                            embedding=chunk["embedding"], attributes=scalar_attributes(chunk["metadata"]),
                            chunk_id=chunk_id, source=json.dumps(source)))
    await ctx.vectors.upsert_chunks(body.vector_db_id, chunks)


def query_params(params: dict[str, Any] | None) -> tuple[int, float, str, dict[str, Any]]:
    """(max_chunks, score_threshold, mode, ranker) from `params`, each checked."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(QUERY_PARAMS))
    if unknown:
        raise InvalidRequest(f"params: unknown {', '.join(unknown)}; known are {', '.join(QUERY_PARAMS)}",
                             param="params")
    k = params.get("max_chunks", DEFAULT_CHUNKS)
    if isinstance(k, float) and k.is_integer():
        k = int(k)  # params is a map of JSON values, which the model reads as floats
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_CHUNKS:
        raise InvalidRequest(f"params.max_chunks must be an integer from 1 to {MAX_CHUNKS}", param="params.max_chunks")
    threshold = params.get("score_threshold", 0.0)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise InvalidRequest("params.score_threshold must be a number", param="params.score_threshold")
    mode = params.get("mode", "vector")
    if mode not in MODES:
        raise InvalidRequest(f"params.mode must be one of {', '.join(MODES)}", param="params.mode")
    return k, float(threshold), mode, ranker_options(params.get("ranker"))


def ranker_options(ranker: Any) -> dict[str, Any]:
    """{"type": "rrf", "impact_factor": > 0} (the default) or {"type": "weighted", "alpha": 0..1}."""
    ranker = {"type": "rrf"} if ranker is None else ranker
    if not isinstance(ranker, dict) or ranker.get("type") not in ("rrf", "weighted"):
        raise InvalidRequest("params.ranker must be {type: rrf, impact_factor} or {type: weighted, alpha}",
                             param="params.ranker")
    if ranker["type"] == "rrf":
        factor = ranker.get("impact_factor", DEFAULT_IMPACT_FACTOR)
        if not isinstance(factor, int | float) or isinstance(factor, bool) or factor <= 0:
            raise InvalidRequest("params.ranker.impact_factor must be a positive number", param="params.ranker")
        return {"ranker": "rrf", "impact_factor": float(factor)}
    alpha = ranker.get("alpha", 0.5)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise InvalidRequest("params.ranker.alpha must be a number from 0 to 1", param="params.ranker")
    return {"ranker": "weighted", "alpha": float(alpha)}


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
    query = content_text(body.query.model_dump(mode="json"), "query")
    if not query.strip():
        raise InvalidRequest("query must not be empty", param="query")
    k, threshold, mode, ranker = query_params(body.params)
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
