"""Ids and timestamps for stored objects, one way for every API area."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime


def new_id(prefix: str) -> str:
    """`prefix` and 24 random hex digits (OpenAI-style ids: `chatcmpl-…`, `vs_…`, `file-…`)."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def new_uuid() -> str:
    """A random UUID in its text form (Llama Stack's agent, session, turn and step ids)."""
    return str(uuid.uuid4())


def now_iso() -> str:
    """The current UTC time in ISO 8601 (Llama Stack's `created_at`/`started_at` date-times)."""
    return datetime.now(UTC).isoformat()


def now() -> int:
    """Unix seconds, as the APIs' `created`/`created_at` fields count them."""
    return int(time.time())
