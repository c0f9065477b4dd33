"""Client telemetry events (POST /v1/telemetry/events) as spans beside the server's own.

A client's span_start / span_end events make a span of the client's name, in the client's
trace, so the Telemetry queries (traces, spans, span trees) show it next to the server's
spans. A log message or a metric point becomes an instant child span of the span it names
(`log` or `metric`, its fields as attributes), so it is found by the same queries, and a
metric's points are what /telemetry/metrics/<name> adds up for a name that is not one of
the server's. Every span made here is marked `origin: client`: the server's own metrics
(requests, durations, tokens) count only its own spans.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.telemetry.spans import iso, new_span_id

CLIENT = "client"


def parse_time(timestamp: str) -> int:
    """Nanoseconds since the epoch; a time without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(timestamp)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        at = int(moment.timestamp() * 1e9)
        iso(at)  # a time that cannot be written back (the first hours of year 1, in a zone) is refused here
        return at
    except (ValueError, OverflowError):
        raise InvalidValueError(f"timestamp {timestamp!r} is not an ISO 8601 date-time within the years 1 to 9999",
                                field="timestamp") from None


def started_span(event: dict[str, Any]) -> dict[str, Any]:
    """The span a span_start event opens."""
    at = parse_time(event["timestamp"])
    span = {"span_id": event["span_id"], "trace_id": event["trace_id"], "name": event["payload"]["name"],
            "start_time": iso(at), "attributes": dict(event.get("attributes") or {}), "status": "ok",
            "origin": CLIENT, "start_ns": at, "created_at": at // 1_000_000_000}
    if event["payload"].get("parent_span_id"):
        span["parent_span_id"] = event["payload"]["parent_span_id"]
    return span


def end_span(span: dict[str, Any], event: dict[str, Any]) -> None:
    """Close `span` in place as a span_end event says."""
    at = parse_time(event["timestamp"])
    span["end_time"] = iso(at)
    span["status"] = event["payload"]["status"]
    span["duration_ms"] = max(0.0, (at - span.get("start_ns", at)) / 1e6)
    span["attributes"].update(event.get("attributes") or {})


def point_span(event: dict[str, Any]) -> dict[str, Any]:
    """A log line or a metric point as an instant child of the span it names."""
    at = parse_time(event["timestamp"])
    if event["type"] == "unstructured_log":
        name, fields = "log", {"message": event["message"], "severity": event["severity"]}
    else:
        name, fields = "metric", {"metric": event["metric"], "value": event["value"], "unit": event["unit"]}
    return {"span_id": new_span_id(), "trace_id": event["trace_id"], "parent_span_id": event["span_id"],
            "name": name, "start_time": iso(at), "end_time": iso(at),
            "attributes": {**(event.get("attributes") or {}), **fields}, "status": "ok", "origin": CLIENT,
            "duration_ms": 0.0, "start_ns": at, "created_at": at // 1_000_000_000}
