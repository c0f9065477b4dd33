"""Ids and timestamps for stored objects, one way for every API area."""

from __future__ import annotations

import time
import uuid


def new_id(prefix: str) -> str:
    """`prefix` and 24 random hex digits (OpenAI-style ids: `chatcmpl-…`, `vs_…`, `file-…`)."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    """Unix seconds, as the APIs' `created`/`created_at` fields count them."""
    return int(time.time())
