"""What the metadata store holds for uploaded files and vector stores, and the reads that
handlers and the ingestion worker share.

Document kinds (see `MetadataStore`):

- FILE, no parent: an uploaded file; `key` names its bytes in the `FileStore`.
- VECTOR_STORE, no parent: a vector store; its counts, usage and status are computed
  from its files on every read, so nothing can drift out of date.
- VECTOR_STORE_FILE, parent = vector store id, id = file id: one file in one store. Its
  `status` is the ingestion state; `in_progress` documents are the durable job queue.
- FILE_BATCH, parent = vector store id: a batch; its files carry its id as `batch_id`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ggstack.core.errors import InvalidValueError, NotFoundError, UnknownIdError
from ggstack.core.ids import now
from ggstack.stores.base import FileStore, MetadataStore

log = logging.getLogger("ggstack.ingest.records")

FILE = "file"
VECTOR_STORE = "vector_store"
VECTOR_STORE_FILE = "vector_store_file"
FILE_BATCH = "vector_store_file_batch"

STATUSES = ("completed", "in_progress", "cancelled", "failed")

#: The spec requires every file to have an integer `expires_at`; a file uploaded without
#: `expires_after` keeps one year, as Llama Stack's local file provider does (ttl_secs).
DEFAULT_FILE_TTL_SECONDS = 365 * 24 * 3600
FILE_TTL_RANGE = (3600, 30 * 24 * 3600)
VECTOR_STORE_TTL_DAYS = (1, 365)

#: OpenAI's limits on `metadata` and `attributes` maps.
MAX_MAP_KEYS = 16
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 512

#: Chunk metadata keys the Chroma store reserves for itself.
RESERVED_ATTRIBUTE_PREFIX = "_ggs_"


# -- files ----------------------------------------------------------------------------------


def file_expired(doc: Mapping[str, Any], at: int | None = None) -> bool:
    expires_at = doc.get("expires_at")
    return isinstance(expires_at, int) and expires_at <= (now() if at is None else at)


async def purge_file(metadata: MetadataStore, files: FileStore, doc: Mapping[str, Any]) -> bool:
    """Delete the record, then the bytes (a crash in between leaves only an unreachable blob)."""
    deleted = await metadata.delete(FILE, doc["id"])
    try:
        await files.delete(doc["key"])
    except NotFoundError:
        pass
    return deleted


async def get_file(metadata: MetadataStore, files: FileStore, file_id: str) -> dict[str, Any]:
    """The live file record; an expired one is purged on sight and is then not found."""
    doc = await metadata.get(FILE, file_id)
    if doc is not None and file_expired(doc):
        await purge_file(metadata, files, doc)
        doc = None
    if doc is None:
        raise NotFoundError(f"File '{file_id}' not found", kind="file", identifier=file_id)
    return doc


async def purge_expired_files(metadata: MetadataStore, files: FileStore) -> int:
    """Remove every expired file; returns how many (a periodic sweep, not a request path)."""
    at = now()
    page = await metadata.list(FILE, limit=None, order="asc")
    expired = [doc for doc in page.items if file_expired(doc, at)]
    for doc in expired:
        await purge_file(metadata, files, doc)
    if expired:
        log.info("removed %d expired file(s)", len(expired))
    return len(expired)


def file_expiry(expires_after: Any, created_at: int) -> int:
    """`expires_at` for an upload; InvalidValueError when `expires_after` is out of range."""
    if expires_after is None:
        return created_at + DEFAULT_FILE_TTL_SECONDS
    seconds = expires_after.seconds
    low, high = FILE_TTL_RANGE
    if not low <= seconds <= high:
        raise InvalidValueError(f"expires_after.seconds must be between {low} and {high}, not {seconds}",
                                field="expires_after.seconds")
    return created_at + seconds


# -- vector stores ---------------------------------------------------------------------------


def store_not_found(store_id: str) -> UnknownIdError:
    # Llama Stack answers an unknown vector store with 400 "Invalid value", and clients expect it.
    # No `field`: the Llama Stack family would append it to this exact, well-known text.
    return UnknownIdError(f"Vector store '{store_id}' not found")


async def get_vector_store(metadata: MetadataStore, store_id: str) -> dict[str, Any]:
    doc = await metadata.get(VECTOR_STORE, store_id)
    if doc is None:
        raise store_not_found(store_id)
    return doc


def store_expires_at(doc: Mapping[str, Any]) -> int | None:
    """From `expires_after` = {"anchor": "last_active_at", "days": n}, validated on write."""
    policy = doc.get("expires_after")
    if not policy:
        return None
    return int(doc.get("last_active_at") or doc["created_at"]) + int(policy["days"]) * 86400


def store_expired(doc: Mapping[str, Any], at: int | None = None) -> bool:
    expires_at = store_expires_at(doc)
    return expires_at is not None and expires_at <= (now() if at is None else at)


def validate_store_expiry(expires_after: Any) -> dict[str, Any] | None:
    if expires_after is None:
        return None
    param = "expires_after"
    if isinstance(expires_after, BaseModel):  # the overlay gives the policy a model of its own
        expires_after = expires_after.model_dump(mode="json", exclude_none=True)
    if not isinstance(expires_after, Mapping):
        raise InvalidValueError("expires_after must be an object", field=param)
    if expires_after.get("anchor") != "last_active_at":
        raise InvalidValueError("expires_after.anchor must be 'last_active_at'", field=f"{param}.anchor")
    days = expires_after.get("days")
    low, high = VECTOR_STORE_TTL_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not low <= days <= high:
        raise InvalidValueError(f"expires_after.days must be an integer between {low} and {high}",
                                field=f"{param}.days")
    extra = set(expires_after) - {"anchor", "days"}
    if extra:
        raise InvalidValueError(f"expires_after has unknown field(s): {', '.join(sorted(extra))}", field=param)
    return {"anchor": "last_active_at", "days": days}


#: `last_active_at` is rewritten at most this often: expiry counts in days, and a write per
#: search would queue every search behind SQLite's single writer.
ACTIVITY_RESOLUTION_SECONDS = 60


async def touch_store(metadata: MetadataStore, store_id: str, doc: Mapping[str, Any] | None = None) -> None:
    """Record activity: `last_active_at` moves, and with it an activity-anchored expiry. `doc`,
    the store as this request read it, saves reading it again (a search read it twice)."""
    stamp = now()
    if doc is None:
        doc = await metadata.get(VECTOR_STORE, store_id)
    if doc is None or stamp - int(doc.get("last_active_at") or 0) < ACTIVITY_RESOLUTION_SECONDS:
        return

    def change(current: dict[str, Any]) -> None:
        current["last_active_at"] = max(stamp, int(current.get("last_active_at") or 0))

    await metadata.update(VECTOR_STORE, store_id, change)


async def file_counts(metadata: MetadataStore, store_id: str, *,
                      batch_id: str | None = None) -> dict[str, int]:
    """Counts by status, each set from one query, so a file changing status meanwhile is
    counted once (separate per-status counts could miss it between two of them)."""
    if batch_id is None:
        grouped = await metadata.count_by(VECTOR_STORE_FILE, "status", parent=store_id)
    else:
        page = await metadata.list(VECTOR_STORE_FILE, parent=store_id, where={"batch_id": batch_id},
                                   limit=None, order="asc")
        grouped = Counter(doc["status"] for doc in page.items)
    counts = {status: int(grouped.get(status, 0)) for status in STATUSES}
    counts["total"] = sum(counts.values())
    return counts


async def usage_bytes(metadata: MetadataStore, store_id: str) -> int:
    page = await metadata.list(VECTOR_STORE_FILE, parent=store_id, limit=None, order="asc")
    return sum(int(doc.get("usage_bytes") or 0) for doc in page.items)


# -- metadata and attributes -----------------------------------------------------------------


def validate_metadata(metadata: Any, param: str = "metadata") -> dict[str, Any]:
    """OpenAI's rules: at most 16 keys of up to 64 characters, string values up to 512."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidValueError(f"{param} must be an object", field=param)
    if len(metadata) > MAX_MAP_KEYS:
        raise InvalidValueError(f"{param} can hold at most {MAX_MAP_KEYS} keys", field=param)
    for key, value in metadata.items():
        if len(key) > MAX_KEY_CHARS:
            raise InvalidValueError(f"{param} keys can be at most {MAX_KEY_CHARS} characters", field=param)
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise InvalidValueError(f"{param}['{key}'] is longer than {MAX_VALUE_CHARS} characters", field=param)
    return dict(metadata)


def validate_attributes(attributes: Any, param: str = "attributes") -> dict[str, str | int | float | bool]:
    """Attributes are copied onto every chunk for filtering, so values must be scalars.

    A null value means "no such attribute" and is dropped.
    """
    checked = validate_metadata(attributes, param)
    out: dict[str, str | int | float | bool] = {}
    for key, value in checked.items():
        if key.startswith(RESERVED_ATTRIBUTE_PREFIX):
            raise InvalidValueError(f"{param} keys may not start with '{RESERVED_ATTRIBUTE_PREFIX}'", field=param)
        if value is None:
            continue
        if not isinstance(value, str | int | float | bool):
            raise InvalidValueError(f"{param}['{key}'] must be a string, number or boolean", field=param)
        out[key] = value
    return out
