"""Scoring rows: each requested function scores every row, then its aggregation functions fold them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.scoring.aggregation import aggregate
from ggstack.scoring.functions import Implementation, ScoringFunctions, effective_params, implementation_of
from ggstack.scoring.judge import judge

#: Rows one score request (or one scored dataset) may hold: a judge generates once per row.
MAX_ROWS = 10_000


async def score_rows(functions: ScoringFunctions, models: Any, rows: Sequence[Mapping[str, Any]],
                     requested: Mapping[str, Mapping[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """`{function id: {"score_rows": [...], "aggregated_results": {...}}}` for `requested`
    (function id -> params for this call, or None for the function's own)."""
    if len(rows) > MAX_ROWS:
        raise InvalidValueError(f"at most {MAX_ROWS} rows can be scored at once, not {len(rows)}", field="input_rows")
    results: dict[str, dict[str, Any]] = {}
    for name, (impl, params) in (await plan(functions, requested)).items():
        scored = [await _score_row(impl.scorer, models, i, row, params) for i, row in enumerate(rows)]
        results[name] = {"score_rows": scored,
                         "aggregated_results": aggregate(scored, params.get("aggregation_functions") or [])}
    return results


async def plan(functions: ScoringFunctions, requested: Mapping[str, Mapping[str, Any] | None]
               ) -> dict[str, tuple[Implementation, dict[str, Any]]]:
    """Each function's implementation and effective params: unknown ids and unusable params are
    refused here, before any row is scored (or, in an eval, generated)."""
    fns = {name: await functions.for_use(name) for name in requested}
    return {name: (implementation_of(fn), effective_params(fn, requested[name])) for name, fn in fns.items()}


async def _score_row(scorer: Any, models: Any, index: int, row: Mapping[str, Any],
                     params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return scorer(row, params) if scorer is not None else await judge(models, row, params)
    except InvalidValueError as exc:
        raise InvalidValueError(f"row {index}: {exc.message}", field=exc.field) from None
