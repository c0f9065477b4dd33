"""Aggregation functions: many rows' scores folded into one metric, in the reference server's shapes.

`aggregate(rows, ["accuracy"])` is `{"accuracy": {"accuracy": 0.7, "num_correct": 7.0, "num_total": 10}}`:
each function's result sits under its own name, as Llama Stack clients read it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ggstack.core.errors import InvalidValueError

Row = Mapping[str, Any]


def _number(value: Any, function: str) -> float:
    """Scores are numbers, but an LLM judge's are the text its regex captured ("4", "0.5")."""
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidValueError(f"aggregation function '{function}' needs numeric scores, "
                                f"and one score is {value!r}", field="aggregation_functions") from None
    if not math.isfinite(number):
        raise InvalidValueError(f"aggregation function '{function}' got a score of {value!r}",
                                field="aggregation_functions")
    return number


def _scores(rows: Sequence[Row], function: str) -> list[float]:
    """The rows' scores, leaving out rows that have none (a judge whose regexes matched nothing)."""
    return [_number(row["score"], function) for row in rows if row.get("score") is not None]


def accuracy(rows: Sequence[Row]) -> dict[str, Any]:
    scores = _scores(rows, "accuracy")
    correct = sum(scores)
    return {"accuracy": correct / len(rows) if rows else 0.0, "num_correct": correct, "num_total": len(rows)}


def average(rows: Sequence[Row]) -> dict[str, Any]:
    scores = _scores(rows, "average")
    return {"average": sum(scores) / len(scores) if scores else None}


def weighted_average(rows: Sequence[Row]) -> dict[str, Any]:
    """Each row weighs its `weight` (ifeval: how many instructions it had)."""
    pairs = [(_number(r["score"], "weighted_average"), _number(r["weight"], "weighted_average"))
             for r in rows if r.get("score") is not None and r.get("weight") is not None]
    total = sum(weight for _, weight in pairs)
    return {"weighted_average": sum(s * w for s, w in pairs) / total if total else None}


def median(rows: Sequence[Row]) -> dict[str, Any]:
    scores = _scores(rows, "median")
    return {"median": statistics.median(scores) if scores else None}


def categorical_count(rows: Sequence[Row]) -> dict[str, Any]:
    """How many rows got each score, keyed by the score as text (sorted)."""
    labels = sorted(str(row.get("score")) for row in rows)
    return {"categorical_count": {label: labels.count(label) for label in dict.fromkeys(labels)}}


FUNCTIONS: dict[str, Callable[[Sequence[Row]], dict[str, Any]]] = {
    "accuracy": accuracy,
    "average": average,
    "weighted_average": weighted_average,
    "median": median,
    "categorical_count": categorical_count,
}


def aggregate(rows: Sequence[Row], functions: Sequence[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in functions:
        if name not in FUNCTIONS:
            raise InvalidValueError(f"aggregation function '{name}' is not one of {', '.join(FUNCTIONS)}",
                                    field="aggregation_functions")
        results[name] = FUNCTIONS[name](rows)
    return results
