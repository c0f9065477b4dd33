"""Agents, sessions and turns as documents in the metadata store.

An agent is kind `agent`; a session is kind `agent_session` under its agent; a turn is kind
`agent_turn` under its session, holding the spec's `Turn` plus the loop's own state (its
status, the inference count so far, the tool calls it waits for), so a turn paused for client
tools can be resumed after a restart. Deleting an agent deletes its sessions and their turns.
"""

from __future__ import annotations

from typing import Any

from ggstack.core.errors import NotFoundError
from ggstack.stores.base import MetadataStore

AGENT = "agent"
SESSION = "agent_session"
TURN = "agent_turn"

#: Turn statuses: running now, paused for client tool responses, finished.
IN_PROGRESS, AWAITING_INPUT, COMPLETED = "in_progress", "awaiting_input", "completed"


async def get_agent(metadata: MetadataStore, agent_id: str) -> dict[str, Any]:
    doc = await metadata.get(AGENT, agent_id)
    if doc is None:
        raise NotFoundError(f"Agent '{agent_id}' not found", kind=AGENT, identifier=agent_id)
    return doc


async def get_session(metadata: MetadataStore, agent_id: str, session_id: str) -> dict[str, Any]:
    await get_agent(metadata, agent_id)
    doc = await metadata.get(SESSION, session_id, parent=agent_id)
    if doc is None:
        raise NotFoundError(f"Session '{session_id}' not found for agent '{agent_id}'", kind=SESSION,
                            identifier=session_id)
    return doc


async def get_turn(metadata: MetadataStore, agent_id: str, session_id: str, turn_id: str) -> dict[str, Any]:
    await get_session(metadata, agent_id, session_id)
    doc = await metadata.get(TURN, turn_id, parent=session_id)
    if doc is None or doc["status"] == IN_PROGRESS:
        raise NotFoundError(f"Turn '{turn_id}' not found in session '{session_id}'", kind=TURN, identifier=turn_id)
    return doc


async def session_turns(metadata: MetadataStore, session_id: str) -> list[dict[str, Any]]:
    """The session's finished or paused turns, oldest first (a turn still running is not yet one)."""
    page = await metadata.list(TURN, parent=session_id, limit=None, order="asc")
    return [doc for doc in page.items if doc["status"] != IN_PROGRESS]


async def delete_session(metadata: MetadataStore, agent_id: str, session_id: str) -> None:
    await metadata.delete_children(TURN, session_id)
    await metadata.delete(SESSION, session_id, parent=agent_id)


async def delete_agent(metadata: MetadataStore, agent_id: str) -> None:
    sessions = await metadata.list(SESSION, parent=agent_id, limit=None, order="asc")
    for session in sessions.items:
        await delete_session(metadata, agent_id, session["session_id"])
    await metadata.delete(AGENT, agent_id)


async def page(metadata: MetadataStore, kind: str, start_index: int | None, limit: int | None, *,
               parent: str | None = None) -> dict[str, Any]:
    """A `PaginatedResponse`, oldest first: the API pages by index, so the database skips
    `start_index` rows and reads `limit` (no limit: the rest)."""
    # the spec (overlaid) bounds start_index >= 0 and limit >= 1
    found = await metadata.list(kind, parent=parent, limit=limit, order="asc", offset=start_index or 0)
    return {"data": found.items, "has_more": found.has_more}
