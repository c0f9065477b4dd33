"""Turns and steps as telemetry spans, stored beside the per-request spans the Telemetry API reads.

A turn is the root of its own trace (span name `agents.turn`); each step is a child span
(`agents.step.<step_type>`) with `parent_span_id` set to the turn's span, so the trace tree
of a turn shows its steps in order. A turn cut short by the client has status `error` (the
spec's span statuses are ok and error) and the attribute `outcome: cancelled`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ggstack.stores.base import MetadataStore
from ggstack.telemetry.spans import SPAN_KIND, iso

log = logging.getLogger("ggstack.agents.spans")


@dataclass
class Span:
    name: str
    trace_id: str
    parent_span_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    span_id: str = field(default_factory=lambda: secrets.token_hex(8))
    start_ns: int = field(default_factory=time.time_ns)

    def child(self, name: str, attributes: Mapping[str, Any]) -> Span:
        return Span(name, self.trace_id, self.span_id, {**self.attributes, **attributes})

    async def end(self, metadata: MetadataStore, outcome: str = "ok") -> None:
        """Store the span; telemetry is a record, never a reason for a turn to fail."""
        ended = time.time_ns()
        status = "ok" if outcome == "ok" else "error"
        self.attributes["outcome"] = outcome
        doc = {"span_id": self.span_id, "trace_id": self.trace_id, "name": self.name,
               "start_time": iso(self.start_ns), "end_time": iso(ended), "attributes": self.attributes,
               "status": status, "duration_ms": (ended - self.start_ns) / 1e6, "start_ns": self.start_ns}
        if self.parent_span_id:
            doc["parent_span_id"] = self.parent_span_id
        try:
            await metadata.put(SPAN_KIND, self.span_id, doc, created_at=self.start_ns // 1_000_000_000)
        except Exception:
            log.exception("could not store span %s", self.span_id)


def turn_span(agent_id: str, session_id: str, turn_id: str) -> Span:
    return Span("agents.turn", secrets.token_hex(16),
                attributes={"agent_id": agent_id, "session_id": session_id, "turn_id": turn_id})
