"""OpenAI vector-store search `filters` -> a Chroma `where` on chunk metadata.

Comparison filters are {"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key", "value"};
compound ones are {"type": "and"|"or", "filters": [...]}. File attributes are copied into
chunk metadata, so `key` is an attribute name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ggstack.core.errors import InvalidValueError

COMPARISONS = {"eq": "$eq", "ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte",
               "in": "$in", "nin": "$nin"}
COMPOUNDS = {"and": "$and", "or": "$or"}
ORDERED = {"gt", "gte", "lt", "lte"}


def _plain(filters: Any) -> Any:
    """Accept generated pydantic models as well as dicts."""
    dump = getattr(filters, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else filters


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def valid_key(key: str) -> bool:
    """`$`-keys are Chroma operators (a key `$and` would be read as one) and `#`-keys its own fields."""
    return not key.startswith(("$", "#")) and key.isprintable()


def to_chroma_where(filters: Any, *, param: str = "filters") -> dict[str, Any] | None:
    """Translate; None or {} means "no filter". Bad input -> InvalidValueError naming `param`."""
    filters = _plain(filters)
    if filters is None or filters == {}:
        return None
    return _translate(filters, param)


def _translate(node: Any, param: str) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        raise InvalidValueError(f"{param} must be an object", field=param)
    kind = node.get("type")
    if kind in COMPOUNDS:
        children = node.get("filters")
        if not isinstance(children, list) or not children:
            raise InvalidValueError(f"{param}.filters must be a non-empty list", field=param)
        parts = [_translate(_plain(child), f"{param}.filters[{i}]") for i, child in enumerate(children)]
        # Chroma wants at least two operands under $and/$or.
        return parts[0] if len(parts) == 1 else {COMPOUNDS[kind]: parts}
    if kind not in COMPARISONS:
        expected = ", ".join([*COMPARISONS, *COMPOUNDS])
        raise InvalidValueError(f"{param}.type must be one of {expected}, not {kind!r}", field=param)
    key, value = node.get("key"), node.get("value")
    if not isinstance(key, str) or not key:
        raise InvalidValueError(f"{param}.key must be a non-empty string", field=param)
    if not valid_key(key):
        raise InvalidValueError(f"{param}.key {key!r} is not an attribute name: it may not start with '$' or '#' "
                                "or hold control characters", field=param)
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            raise InvalidValueError(f"{param}.value must be a non-empty list of strings, numbers or "
                                    f"booleans for '{kind}'", field=param)
    elif kind in ORDERED:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidValueError(f"{param}.value must be a number for '{kind}'", field=param)
    elif not _is_scalar(value):
        raise InvalidValueError(f"{param}.value must be a string, number or boolean", field=param)
    return {key: {COMPARISONS[kind]: value}}


def combine(*wheres: dict[str, Any] | None) -> dict[str, Any] | None:
    """AND together the non-empty `where`s."""
    parts = [w for w in wheres if w]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}
