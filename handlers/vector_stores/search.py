"""Search a vector store by meaning (vector), by words (keyword, BM25) or both (hybrid).

A list of queries is searched as one query of all their words. `rewrite_query` is
accepted and has no effect: rewriting would need a chat model the store does not own.
Hybrid ranking is reciprocal-rank fusion unless `ranking_options.ranker` is "weighted".
"""

from __future__ import annotations

from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenaiSearchVectorStoreRequest,
    VectorStoreContent,
    VectorStoreSearchResponse,
    VectorStoreSearchResponsePage,
)
from ggstack.core.context import Context
from ggstack.http.errors import InvalidRequest
from ggstack.ingest import records
from ggstack.ingest.pipeline import embed_texts
from ggstack.ingest.records import VECTOR_STORE_FILE
from ggstack.stores.base import Hit, Ranker
from handlers.vector_stores.common import active_store

DEFAULT_RESULTS = 10
MAX_RESULTS = 50
MODES = ("vector", "keyword", "hybrid")
RRF_NAMES = (None, "auto", "default", "default-2024-11-15", "rrf")


def ranker_of(options: Any) -> Ranker:
    name = options.ranker if options is not None else None
    if name in RRF_NAMES:
        return "rrf"
    if name == "weighted":
        return "weighted"
    raise InvalidRequest(f"ranking_options.ranker must be 'rrf' or 'weighted', not {name!r}",
                         param="ranking_options.ranker")


async def openai_search_vector_store(vector_store_id: str, body: OpenaiSearchVectorStoreRequest,
                                     ctx: Context) -> VectorStoreSearchResponsePage:
    store = await active_store(ctx, vector_store_id)
    query = body.query if isinstance(body.query, str) else " ".join(body.query)
    if not query.strip():
        # As vector-io says it: a blank query is valid JSON the search cannot use.
        raise InvalidRequest("Invalid value: query must not be empty", param="query")
    k = DEFAULT_RESULTS if body.max_num_results is None else body.max_num_results
    if not 1 <= k <= MAX_RESULTS:
        raise InvalidRequest(f"max_num_results must be between 1 and {MAX_RESULTS}", param="max_num_results")
    mode = body.search_mode or "vector"
    if mode not in MODES:
        raise InvalidRequest(f"search_mode must be one of {', '.join(MODES)}, not {mode!r}", param="search_mode")
    ranker = ranker_of(body.ranking_options)
    threshold = (body.ranking_options.score_threshold if body.ranking_options else None) or 0.0
    filters = body.filters

    hits: list[Hit]
    if mode == "keyword":
        hits = await ctx.vectors.keyword(vector_store_id, query, k=k, where=filters)
    else:
        engine = await ctx.models.embedder(store["embedding_model"])
        [embedding] = await embed_texts(engine, [query])
        if mode == "vector":
            hits = await ctx.vectors.query(vector_store_id, embedding, k=k, where=filters)
        else:
            hits = await ctx.vectors.hybrid(vector_store_id, embedding, query, k=k, where=filters,
                                            ranker=ranker)
    await records.touch_store(ctx.metadata, vector_store_id, store)

    files = await ctx.metadata.get_many(VECTOR_STORE_FILE, [hit.chunk.file_id for hit in hits],
                                        parent=vector_store_id)
    filenames = {file_id: doc.get("filename") for file_id, doc in files.items()}
    data = [VectorStoreSearchResponse(file_id=hit.chunk.file_id, filename=filenames.get(hit.chunk.file_id) or "",
                                      score=hit.score, attributes=hit.chunk.attributes or None,
                                      content=[VectorStoreContent(type="text", text=hit.chunk.text)])
            for hit in hits
            # A file detached while this search ran has no record left: leave its chunks out.
            # Chunks inserted through vector-io (`source`) belong to no file and stay.
            if hit.score >= threshold and (filenames.get(hit.chunk.file_id) is not None or hit.chunk.source is not None)]
    return VectorStoreSearchResponsePage(object="vector_store.search_results.page", search_query=query, data=data,
                                         has_more=False)
