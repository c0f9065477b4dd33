"""`file_search` tools: the server searches the vector stores before generating, puts what it
found in the system turn, and reports the search as a `file_search_call` output item.

The search is the vector-store search operation itself (passed in by the handler), so
filters, ranking options, score thresholds and errors are exactly those of
`POST /vector_stores/{id}/search`. The query is the user's last message: the small local
models cannot be relied on to phrase one, and one search per request keeps latency known.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from generated.models.llama_stack_deprecated import (
    OpenaiSearchVectorStoreRequest,
    VectorStoreSearchResponsePage,
)
from ggstack.core.ids import new_id
from ggstack.inference.openai_responses.items import FileSearchTool

#: (vector_store_id, request) -> the search page, as the vector-store search operation answers.
Search = Callable[[str, OpenaiSearchVectorStoreRequest], Awaitable[VectorStoreSearchResponsePage]]
#: Text -> its length in the model's tokens.
CountTokens = Callable[[str], Awaitable[int]]

#: Share of the model's context the search results may fill; the rest is the conversation and answer.
CONTEXT_SHARE = 0.5


async def search(tool: FileSearchTool, query: str, run: Search) -> dict[str, Any]:
    """Every store of the tool searched; the best `max_num_results` hits overall, as a `file_search_call`."""
    request = OpenaiSearchVectorStoreRequest(query=query, max_num_results=tool.max_num_results,
                                             filters=tool.filters, ranking_options=tool.ranking_options)
    results: list[dict[str, Any]] = []
    for store_id in tool.vector_store_ids:
        page = await run(store_id, request)
        results += [{"file_id": hit.file_id, "filename": hit.filename, "score": hit.score,
                     "text": "\n".join(part.text for part in hit.content), "attributes": dict(hit.attributes or {})}
                    for hit in page.data]
    results.sort(key=lambda r: r["score"], reverse=True)
    return {"type": "file_search_call", "id": new_id("fs_"), "queries": [query], "status": "completed",
            "results": results[:tool.max_num_results]}


async def context_text(calls: Sequence[dict[str, Any]], *, context_length: int, count_tokens: CountTokens) -> str:
    """The search results as system-turn text, best first, within a share of the context ("" if none).

    A result that does not fit is left out; if not even the best one fits, its start is kept.
    """
    results = sorted((r for call in calls for r in call["results"]), key=lambda r: r["score"], reverse=True)
    if not results:
        return ""
    query = calls[0]["queries"][0]
    head = f'The file search for "{query}" found these passages:'
    tail = "Use them to answer when they are relevant; say so when they do not contain the answer."
    budget = int(context_length * CONTEXT_SHARE) - await count_tokens(f"{head}\n{tail}")
    blocks: list[str] = []
    for result in results:
        block = f"[{len(blocks) + 1}] {result['filename'] or result['file_id']}:\n{result['text'].strip()}"
        size = await count_tokens(block)
        if size <= budget:
            blocks.append(block)
            budget -= size
        elif not blocks and budget > 0:
            blocks.append(block[:max(1, len(block) * budget // size)])
            budget = 0
    return "\n\n".join([head, *blocks, tail]) if blocks else ""
