"""Stored responses: each response is kept with the whole conversation it answered.

As in Llama Stack, a response's `input` is the previous response's input and output
followed by the new input items, so a continuation needs only the one response it
names (deleting an earlier one does not break the chain), and `input_items` lists the
conversation up to that response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ggstack.core.errors import UnknownIdError
from ggstack.stores.base import MetadataStore, Order

KIND = "openai_response"
DEFAULT_LIMIT = 50
#: Lists are clamped to this page size (the spec gives `limit` no bounds, so none is refused).
MAX_LIMIT = 100
DEFAULT_ITEMS_LIMIT = 20


async def store_response(metadata: MetadataStore, response: Mapping[str, Any],
                         input_items: Sequence[Mapping[str, Any]]) -> None:
    doc = {**response, "input": [dict(item) for item in input_items]}
    await metadata.put(KIND, response["id"], doc, created_at=response["created_at"])


async def response_doc(metadata: MetadataStore, response_id: str, *, param: str = "response_id") -> dict[str, Any]:
    """The stored response with its input (400 "Invalid value" when unknown, as Llama Stack answers)."""
    doc = await metadata.get(KIND, response_id)
    if doc is None:
        raise UnknownIdError(f"Response '{response_id}' not found", field=param)
    return doc


def without_input(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The `OpenAIResponseObject` part of a stored document."""
    return {k: v for k, v in doc.items() if k != "input"}


async def conversation(metadata: MetadataStore, previous_response_id: str) -> list[dict[str, Any]]:
    """What a continuation starts from: the previous response's input, then its output."""
    doc = await response_doc(metadata, previous_response_id, param="previous_response_id")
    return [*doc["input"], *doc["output"]]


async def list_responses(metadata: MetadataStore, *, after: str | None = None, limit: int = DEFAULT_LIMIT,
                         model: str | None = None, order: Order = "desc") -> dict[str, Any]:
    """A `ListOpenAIResponseObject` body (first_id/last_id are "" for an empty page)."""
    page = await metadata.list(KIND, after=after, limit=min(max(limit, 1), MAX_LIMIT), order=order,
                               where={"model": model} if model is not None else None)
    return {"object": "list", "data": page.items, "has_more": page.has_more,
            "first_id": page.first_id or "", "last_id": page.last_id or ""}


async def delete_response(metadata: MetadataStore, response_id: str) -> dict[str, Any]:
    if not await metadata.delete(KIND, response_id):
        raise UnknownIdError(f"Response '{response_id}' not found", field="response_id")
    return {"id": response_id, "object": "response", "deleted": True}


def page_items(items: Sequence[Mapping[str, Any]], *, after: str | None = None, before: str | None = None,
               limit: int = DEFAULT_ITEMS_LIMIT, order: Order = "desc") -> list[dict[str, Any]]:
    """A page of input items in `order`: those after `after` and before `before` (item ids), at most `limit`.

    With only `before`, the page is the `limit` items just before it (the page one back).
    """
    ordered = [dict(item) for item in (reversed(items) if order == "desc" else items)]
    ids = [item.get("id") for item in ordered]
    start, stop = 0, len(ordered)
    for cursor, param in ((after, "after"), (before, "before")):
        if cursor is not None and cursor not in ids:
            raise UnknownIdError(f"item '{cursor}' is not an input item of this response",
                                 field=param)
    if after is not None:
        start = ids.index(after) + 1
    if before is not None:
        stop = ids.index(before)
    if stop <= start:
        return []
    if before is not None and after is None:
        return ordered[max(start, stop - limit):stop]
    return ordered[start:min(stop, start + limit)]
