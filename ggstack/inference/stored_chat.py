"""Stored chat completions: every chat completion is kept with its input messages, for list and get.

Documents are kept in the full OpenAI shape (usage included) and cut down to the serving
spec's dialect when read, so a spec that gains `usage` shows it for old completions too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ggstack.core.errors import InvalidValueError, UnknownIdError
from ggstack.inference.openai_format import Dialect
from ggstack.stores.base import MetadataStore, Order, Page

KIND = "chat_completion"
DEFAULT_LIMIT = 20
MAX_LIMIT = 10000


async def store_chat_completion(metadata: MetadataStore, completion: Mapping[str, Any],
                                input_messages: Sequence[Mapping[str, Any]]) -> None:
    """Keep `completion` (an OpenAI-dialect body) with the request's messages."""
    doc = {**completion, "input_messages": [dict(m) for m in input_messages]}
    await metadata.put(KIND, completion["id"], doc, created_at=completion["created"])


async def get_chat_completion(metadata: MetadataStore, completion_id: str, dialect: Dialect) -> dict[str, Any]:
    """The stored completion (400 "Invalid value" when unknown, as Llama Stack answers)."""
    doc = await metadata.get(KIND, completion_id)
    if doc is None:
        raise UnknownIdError(f"Chat completion '{completion_id}' not found", field="completion_id")
    return in_dialect(doc, dialect)


async def list_chat_completions(metadata: MetadataStore, dialect: Dialect, *, after: str | None = None,
                                limit: int = DEFAULT_LIMIT, model: str | None = None,
                                order: Order = "desc") -> dict[str, Any]:
    """A `ListOpenAIChatCompletionResponse` body (first_id/last_id are "" for an empty page)."""
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
