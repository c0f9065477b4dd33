"""The Agents API (deprecated document at /v1, and /v1alpha): agents, sessions, turns, steps.

Everything is kept in the metadata store whatever `enable_session_persistence` says (a
restart loses no agent, session or turn). Lists page by `start_index` and `limit`, oldest first.
"""

from handlers.agents.resources import (
    create_agent,
    create_agent_session,
    delete_agent,
    delete_agents_session,
    get_agent,
    get_agents_session,
    list_agent_sessions,
    list_agents,
)
from handlers.agents.turns import create_agent_turn, get_agents_step, get_agents_turn, resume_agent_turn

__all__ = [
    "create_agent",
    "create_agent_session",
    "create_agent_turn",
    "delete_agent",
    "delete_agents_session",
    "get_agent",
    "get_agents_session",
    "get_agents_step",
    "get_agents_turn",
    "list_agent_sessions",
    "list_agents",
    "resume_agent_turn",
]
