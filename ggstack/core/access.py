"""Who is asking: the API key behind the current request, and which stored objects it may see.

With API keys configured, every stored top-level object (a file, vector store, response, chat
completion, dataset, agent, ...) records the name of the key that created it, and a key sees
only its own; an admin key sees everything. The metadata store applies this itself, reading
the caller from a context variable the auth middleware sets, so an API area gets scoping by
storing its objects there and nothing else. Work not done for a request (start-up, the
ingestion worker, sweeps) runs with no caller and sees everything.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass

#: Kinds every key shares: what the operator configures rather than what a caller owns.
SHARED_KINDS = frozenset({"model", "benchmark", "scoring_function", "span"})


@dataclass(frozen=True)
class Principal:
    """A configured API key, by its name (the key itself is never kept)."""

    name: str
    admin: bool = False


current_principal: ContextVar[Principal | None] = ContextVar("ggstack_principal", default=None)


def owner_scope(kind: str) -> str | None:
    """The owner a top-level `kind` object must have to be seen now, or None for no restriction."""
    principal = current_principal.get()
    if principal is None or principal.admin or kind in SHARED_KINDS:
        return None
    return principal.name


def creator() -> str | None:
    """The owner recorded on objects created now (admins own what they create, too)."""
    principal = current_principal.get()
    return principal.name if principal is not None else None


def key_digest(key: str) -> str:
    """What the run config holds instead of a key: its SHA-256, hex. API keys are long random
    strings, so a fast unsalted hash is enough; a password would need a slow salted one."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
