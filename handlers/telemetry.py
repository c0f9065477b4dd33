"""Telemetry: query the spans ggstack records for every API call (ggstack.telemetry.spans).

Each call is a trace of one root span (or a child span of the caller's trace when it sent
`traceparent`). Metrics are computed from the spans: `requests`, `duration_ms`, and the token
counts `prompt_tokens`, `completion_tokens`, `total_tokens` that inference answers report.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from generated.models.llama_stack_deprecated import (
    GetSpanTreeRequest,
    QueryMetricsRequest,
    QuerySpansRequest,
    QueryTracesRequest,
    SaveSpansToDatasetRequest,
)
from generated.models.llama_stack_stable import LogEventRequest
from ggstack.core.context import Context
from ggstack.datasets.rows import add_rows
from ggstack.http.errors import InvalidRequest, NotFound
from ggstack.stores.base import Condition, MetadataStore
from ggstack.telemetry.events import CLIENT, end_span, point_span, started_span
from ggstack.telemetry.spans import SPAN_KIND
from handlers.datasets import find_dataset

SPAN_FIELDS = ("span_id", "trace_id", "parent_span_id", "name", "start_time", "end_time", "attributes")
METRICS = {"requests": "count", "duration_ms": "ms", "prompt_tokens": "tokens", "completion_tokens": "tokens",
           "total_tokens": "tokens"}
GRANULARITY = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Traces per query_traces page when the request gives no limit (the reference's default), and at most.
DEFAULT_TRACES, MAX_TRACES = 100, 1000
#: Spans one query_spans answer holds at most, oldest first.
MAX_SPANS = 1000
#: The spans a client metric's points are among (ggstack.telemetry.events.point_span).
CLIENT_METRICS = (Condition("origin", "eq", CLIENT), Condition("name", "eq", "metric"))


async def span_store(ctx: Context) -> MetadataStore:
    """The store, once every span recorded so far is in it (spans are written in batches)."""
    if ctx.spans is not None:
        await ctx.spans.flush()
    return ctx.metadata


def conditions(filters: list[dict[str, Any]]) -> list[Condition]:
    """QueryCondition (eq / ne / gt / lt) on a span attribute, or a span field such as `name` when
    no attribute has that key; the database applies them (ggstack.stores.conditions)."""
    return [Condition(f["key"], f["op"], f["value"]) for f in filters]


def public(span: dict[str, Any], attributes: list[str] | None = None, *, status: bool = False) -> dict[str, Any]:
    out = {k: span[k] for k in SPAN_FIELDS if k in span}
    if attributes:
        out["attributes"] = {k: v for k, v in span.get("attributes", {}).items() if k in attributes}
    if status:
        out["status"] = span.get("status", "ok")
    return out


def as_trace(span: dict[str, Any]) -> dict[str, Any]:
    trace = {"trace_id": span["trace_id"], "root_span_id": span["span_id"], "start_time": span["start_time"]}
    if "end_time" in span:
        trace["end_time"] = span["end_time"]
    return trace


async def query_traces(ctx: Context, body: QueryTracesRequest | None = None) -> dict[str, Any]:
    """A trace is its first span; filters, order and the page are applied by the database, so a
    page costs the same however many spans are kept."""
    request = body.model_dump(mode="json", exclude_unset=True) if body else {}
    limit = request.get("limit")
    limit = DEFAULT_TRACES if limit is None or limit < 0 else min(limit, MAX_TRACES)
    found = await (await span_store(ctx)).find(
        SPAN_KIND, conditions=conditions(request.get("attribute_filters", [])), under="attributes",
        order_by=request.get("order_by", []), first_per="trace_id", offset=max(request.get("offset", 0), 0),
        limit=limit)
    return {"data": [as_trace(s) for s in found]}


async def get_trace(trace_id: str, ctx: Context) -> dict[str, Any]:
    spans = await (await span_store(ctx)).list(SPAN_KIND, limit=1, order="asc", where={"trace_id": trace_id})
    if not spans.items:
        raise NotFound(f"Trace '{trace_id}' not found", param="trace_id")
    return as_trace(spans.items[0])


async def get_span(trace_id: str, span_id: str, ctx: Context) -> dict[str, Any]:
    span = await (await span_store(ctx)).get(SPAN_KIND, span_id)
    if span is None or span["trace_id"] != trace_id:
        raise NotFound(f"Span '{span_id}' of trace '{trace_id}' not found", param="span_id")
    return public(span)


async def get_span_tree(span_id: str, ctx: Context, body: GetSpanTreeRequest | None = None) -> dict[str, Any]:
    request = body.model_dump(mode="json", exclude_unset=True) if body else {}
    root = await (await span_store(ctx)).get(SPAN_KIND, span_id)
    if root is None:
        raise NotFound(f"Span '{span_id}' not found", param="span_id")
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in (await ctx.metadata.list(SPAN_KIND, limit=None, order="asc", where={"trace_id": root["trace_id"]})).items:
        if span.get("parent_span_id"):
            children[span["parent_span_id"]].append(span)
    tree: dict[str, Any] = {}
    level, depth = [root], 0
    max_depth = request.get("max_depth")
    while level and (max_depth is None or depth <= max_depth):
        for span in level:
            tree[span["span_id"]] = public(span, request.get("attributes_to_return"), status=True)
        level = [child for span in level for child in children[span["span_id"]]]
        depth += 1
    return {"data": tree}


async def query_spans(body: QuerySpansRequest, ctx: Context) -> dict[str, Any]:
    """The oldest MAX_SPANS matching spans (the request has no paging of its own)."""
    request = body.model_dump(mode="json", exclude_unset=True)
    spans = await (await span_store(ctx)).find(SPAN_KIND, conditions=conditions(request["attribute_filters"]),
                                               under="attributes", limit=MAX_SPANS)
    return {"data": [public(s, request["attributes_to_return"]) for s in spans]}


async def save_spans_to_dataset(body: SaveSpansToDatasetRequest, ctx: Context) -> None:
    """Each matching span becomes one row holding the chosen attributes (every match: read and
    written a batch at a time)."""
    request = body.model_dump(mode="json", exclude_unset=True)
    dataset = await find_dataset(ctx, request["dataset_id"])
    keys = request["attributes_to_save"]
    store = await span_store(ctx)
    async for spans in store.scan(SPAN_KIND, conditions=conditions(request["attribute_filters"]), under="attributes"):
        await add_rows(ctx.metadata, dataset, [{k: s.get("attributes", {}).get(k, s.get(k)) for k in keys}
                                               for s in spans])


def label_matches(labels: dict[str, str], matchers: list[dict[str, Any]]) -> bool:
    for matcher in matchers:
        actual = labels.get(matcher["name"], "")
        op, value = matcher.get("operator", "="), matcher["value"]
        try:
            found = re.fullmatch(value, actual) is not None if op in ("=~", "!~") else actual == value
        except re.error:
            raise InvalidRequest(f"label matcher '{value}' is not a valid regular expression",
                                 param="label_matchers") from None
        if found != (op in ("=", "=~")):
            return False
    return True


def bucket_seconds(granularity: str | None) -> int | None:
    if not granularity:
        return None
    match = GRANULARITY.match(granularity.strip())
    if not match:
        raise InvalidRequest(f"granularity '{granularity}' must look like 30s, 1m, 1h, 1d or 1w", param="granularity")
    return max(int(match.group(1)) * UNIT_SECONDS[match.group(2)], 1)


def server_point(span: dict[str, Any], metric_name: str) -> float | None:
    """What one server span adds to a server metric; client spans add nothing."""
    if span.get("origin") == CLIENT:
        return None
    if metric_name == "requests":
        return 1.0
    return span.get("duration_ms") if metric_name == "duration_ms" else span.get("attributes", {}).get(metric_name)


def metric_point(span: dict[str, Any], metric_name: str) -> float | None:
    """The value of a client's metric event (ggstack.telemetry.events) of that name."""
    attributes = span.get("attributes", {})
    if span.get("origin") == CLIENT and span["name"] == "metric" and attributes.get("metric") == metric_name:
        return attributes["value"]
    return None


async def log_event(body: LogEventRequest, ctx: Context) -> None:
    """Stored as spans (ggstack.telemetry.events); `ttl_seconds` is accepted, and client spans
    are kept as the server's are: the newest `telemetry_max_spans` of them all."""
    event = body.event.model_dump(mode="json", exclude_none=True)
    store = await span_store(ctx)
    if event["type"] == "structured_log" and event["payload"]["type"] == "span_end":
        if await store.update(SPAN_KIND, event["span_id"], lambda span: end_span(span, event)) is None:
            raise InvalidRequest(f"Invalid value: span '{event['span_id']}' was never started",
                                 param="event.span_id")
        return
    span = started_span(event) if event["type"] == "structured_log" else point_span(event)
    await store.put(SPAN_KIND, span["span_id"], span)
    if ctx.spans is not None:
        await ctx.spans.prune(store)


async def client_metric_unit(store: MetadataStore, metric_name: str) -> str | None:
    """The unit of the first point a client logged for `metric_name`, or None if none did."""
    async for spans in store.scan(SPAN_KIND, conditions=CLIENT_METRICS):
        for span in spans:
            if metric_point(span, metric_name) is not None:
                return span["attributes"]["unit"]
    return None


async def metric_spans(store: MetadataStore, client_metric: bool, start: int,
                       end: int | None) -> AsyncIterator[dict[str, Any]]:
    """The spans that may add to a metric over [start, end], read a batch at a time."""
    async for spans in store.scan(SPAN_KIND, conditions=CLIENT_METRICS if client_metric else (),
                                  created=(start, end)):
        for span in spans:
            yield span


async def query_metrics(metric_name: str, body: QueryMetricsRequest, ctx: Context) -> dict[str, Any]:
    store = await span_store(ctx)
    client_metric = metric_name not in METRICS
    unit = METRICS.get(metric_name) or await client_metric_unit(store, metric_name)
    if unit is None:
        raise NotFound(f"Metric '{metric_name}' not found; the server's metrics are {', '.join(METRICS)}, and no "
                       "client has logged one of that name", param="metric_name")
    request = body.model_dump(mode="json", exclude_unset=True)
    start, end = request["start_time"], request.get("end_time")
    step = bucket_seconds(request.get("granularity"))
    series: dict[tuple[tuple[str, str], ...], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    async for span in metric_spans(store, client_metric, start, end):
        at = span["start_ns"] // 1_000_000_000
        if at < start or (end is not None and at > end):
            continue
        attributes = span.get("attributes", {})
        value = metric_point(span, metric_name) if client_metric else server_point(span, metric_name)
        if value is None:
            continue
        labels = {"operation_id": str(attributes.get("operation_id", ""))}
        if "model_id" in attributes:
            labels["model_id"] = str(attributes["model_id"])
        if not label_matches(labels, request.get("label_matchers", [])):
            continue
        timestamp = start if request["query_type"] == "instant" or step is None else start + (at - start) // step * step
        series[tuple(sorted(labels.items()))][timestamp] += float(value)
    return {"data": [
        {"metric": metric_name, "labels": [{"name": k, "value": v} for k, v in labels],
         "values": [{"timestamp": t, "value": v, "unit": unit} for t, v in sorted(points.items())]}
        for labels, points in sorted(series.items())
    ]}
