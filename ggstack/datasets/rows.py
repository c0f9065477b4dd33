"""Dataset rows: where they come from (a `rows` source or a `data:` URI) and how they are kept.

Rows live in the metadata store as kind "dataset_row" under their dataset, one document per
row in order, so appending never rewrites what is there and paging reads only what it needs.
A `http(s)://` source is registered as given, but its rows cannot be read here (no network):
reading them is a clear 400, never an empty list.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from typing import Any
from urllib.parse import unquote_to_bytes

from ggstack.core.errors import InvalidValueError

ROW_KIND = "dataset_row"


def rows_from_source(source: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows a source holds, or None when they live somewhere this server cannot read."""
    if source.get("type") == "rows":
        return list(source.get("rows", []))
    uri = str(source.get("uri", ""))
    if uri.startswith("data:"):
        return rows_from_data_uri(uri)
    return None


def rows_from_data_uri(uri: str) -> list[dict[str, Any]]:
    """`data:<type>[;base64],<payload>` holding CSV, JSON (a list of objects) or JSON lines."""
    header, _, payload = uri[len("data:"):].partition(",")
    params = header.split(";")
    media_type = params[0].lower()
    try:
        raw = base64.b64decode(payload, validate=True) if "base64" in params[1:] else unquote_to_bytes(payload)
        text = raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidValueError(f"Dataset source URI cannot be decoded: {exc}", field="source.uri") from None
    if "csv" in media_type:
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    try:
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InvalidValueError(f"Dataset source URI holds neither CSV nor JSON rows: {exc}", field="source.uri") from None
    if not all(isinstance(row, dict) for row in rows):
        raise InvalidValueError("Every dataset row must be a JSON object", field="source.uri")
    return rows


def row_id(index: int) -> str:
    """Zero-padded so ids sort like indexes."""
    return f"{index:010d}"


def rows_parent(dataset: dict[str, Any]) -> str:
    """Where a dataset's rows live: a key of their own, written before the dataset record, so
    rows written for an id that turns out to be taken land nowhere anyone reads. (Datasets
    from before this key keep their rows under their identifier.)"""
    return dataset.get("rows_key") or dataset["identifier"]


async def add_rows(metadata: Any, dataset: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Append after the rows already there; each row is one document, nothing is rewritten."""
    parent = rows_parent(dataset)
    count = await metadata.count(ROW_KIND, parent=parent)
    await metadata.put_many(ROW_KIND, [(row_id(count + i), row) for i, row in enumerate(rows)], parent=parent)

