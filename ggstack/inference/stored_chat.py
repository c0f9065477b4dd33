"""Stored chat completions: each chat completion is kept with its input messages, for list and get.

Documents are kept in the full OpenAI shape (usage included) and cut down to the serving
spec's dialect when read, so a spec that gains `usage` shows it for old completions too.

Conversations are what a user would least want kept forever, so `retention_days` (the
`chat_completions_retention_days` setting) bounds their life: older ones are deleted the next
time completions are stored or read, and are never shown; 0 stores nothing. A request's own
`store: false` keeps it out, and DELETE removes one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ggstack.core.errors import InvalidValueError, UnknownIdError
from ggstack.inference.openai_format import Dialect
from ggstack.stores.base import MetadataStore, Order, Page

KIND = "chat_completion"
DEFAULT_LIMIT = 20
MAX_LIMIT = 10000
#: Expired completions deleted per pass; passes repeat until one finds fewer.
PURGE_BATCH = 100


def expired(doc: Mapping[str, Any], retention_days: float | None) -> bool:
    return retention_days is not None and doc.get("created", 0) < time.time() - retention_days * 86400


async def purge_expired(metadata: MetadataStore, retention_days: float | None) -> int:
    """Delete the completions past retention, oldest first; how many went."""
    if retention_days is None:
        return 0
    purged = 0
    while True:
        page = await metadata.list(KIND, limit=PURGE_BATCH, order="asc")
        old = [doc for doc in page.items if expired(doc, retention_days)]
        for doc in old:
            purged += await metadata.delete(KIND, doc["id"])
        if len(old) < PURGE_BATCH:
            return purged


async def store_chat_completion(metadata: MetadataStore, completion: Mapping[str, Any],
                                input_messages: Sequence[Mapping[str, Any]], *,
                                retention_days: float | None = None) -> None:
    """Keep `completion` (an OpenAI-dialect body) with the request's messages (not when retention is 0)."""
    await purge_expired(metadata, retention_days)
    if retention_days == 0:
        return
    doc = {**completion, "input_messages": [dict(m) for m in input_messages]}
    await metadata.put(KIND, completion["id"], doc, created_at=completion["created"])


async def find_chat_completion(metadata: MetadataStore, completion_id: str,
                               retention_days: float | None = None) -> dict[str, Any]:
    """The stored document (400 "Invalid value" when unknown or past retention, as Llama Stack answers)."""
    doc = await metadata.get(KIND, completion_id)
    if doc is not None and expired(doc, retention_days):
        await metadata.delete(KIND, completion_id)
        doc = None
    if doc is None:
        raise UnknownIdError(f"Chat completion '{completion_id}' not found", field="completion_id")
    return doc


async def get_chat_completion(metadata: MetadataStore, completion_id: str, dialect: Dialect, *,
                              retention_days: float | None = None) -> dict[str, Any]:
    return in_dialect(await find_chat_completion(metadata, completion_id, retention_days), dialect)


async def delete_chat_completion(metadata: MetadataStore, completion_id: str, *,
                                 retention_days: float | None = None) -> dict[str, Any]:
    """Remove one, input messages and all; the body OpenAI answers with."""
    await find_chat_completion(metadata, completion_id, retention_days)
    await metadata.delete(KIND, completion_id)
    return {"id": completion_id, "object": "chat.completion.deleted", "deleted": True}


async def list_chat_completions(metadata: MetadataStore, dialect: Dialect, *, after: str | None = None,
                                limit: int = DEFAULT_LIMIT, model: str | None = None,
                                order: Order = "desc", retention_days: float | None = None) -> dict[str, Any]:
    """A `ListOpenAIChatCompletionResponse` body (first_id/last_id are "" for an empty page)."""
    await purge_expired(metadata, retention_days)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidValueError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    # an empty `after` or `model` (as form-filling clients send) means "not given"
    page: Page = await metadata.list(KIND, after=after or None, limit=limit, order=order,
                                     where={"model": model} if model else None)
    return {"object": "list", "data": [in_dialect(doc, dialect) for doc in page.items],
            "has_more": page.has_more, "first_id": page.first_id or "", "last_id": page.last_id or ""}


def in_dialect(doc: Mapping[str, Any], dialect: Dialect) -> dict[str, Any]:
    """A stored document as the dialect allows: without `usage`, without null values."""
    body = {k: v for k, v in doc.items() if dialect.usage or k != "usage"}
    return body if dialect.nulls else _without_nulls(body)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
