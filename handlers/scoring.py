"""Scoring rows given in the request, or a dataset's rows (optionally saved as a new dataset)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from generated.models.llama_stack_stable import ScoreBatchRequest, ScoreRequest
from ggstack.core.context import Context
from ggstack.core.errors import InvalidValueError, UnknownIdError
from ggstack.datasets import records
from ggstack.datasets.rows import ROW_KIND, rows_parent
from ggstack.http.errors import InvalidRequest
from ggstack.scoring import MAX_ROWS, ScoringFunctions, score_rows

#: What a saved results dataset is for (one of the spec's DatasetPurpose values).
RESULTS_PURPOSE = "eval/question-answer"


@contextmanager
def invalid_values() -> Iterator[None]:
    """Rows or params the functions cannot use: 400 'Invalid value: ...', as the reference answers
    its ValueErrors (an unknown id already reads that way)."""
    try:
        yield
    except UnknownIdError:
        raise
    except InvalidValueError as exc:
        raise InvalidRequest(f"Invalid value: {exc.message}", param=exc.field) from None


def requested(functions: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    return {name: params.model_dump(mode="json", exclude_none=True) if params is not None else None
            for name, params in functions.items()}


async def score(body: ScoreRequest, ctx: Context) -> dict[str, Any]:
    with invalid_values():
        results = await score_rows(ScoringFunctions(ctx.metadata), ctx.models, body.input_rows,
                                   requested(body.scoring_functions))
    return {"results": results}


async def score_batch(body: ScoreBatchRequest, ctx: Context) -> dict[str, Any]:
    """`dataset_id` in the answer is the saved results dataset when `save_results_dataset` is true
    (each row is the scored row plus, under each function's id, that function's score row)."""
    rows = await dataset_rows(ctx, body.dataset_id)
    with invalid_values():
        results = await score_rows(ScoringFunctions(ctx.metadata), ctx.models, rows, requested(body.scoring_functions))
    if not body.save_results_dataset:
        return {"results": results}
    saved = [{**row, **{name: result["score_rows"][i] for name, result in results.items()}}
             for i, row in enumerate(rows)]
    dataset_id = f"{body.dataset_id}-scored-{uuid.uuid4().hex[:8]}"
    await records.create(ctx.metadata, dataset_id, purpose=RESULTS_PURPOSE, source={"type": "rows", "rows": saved},
                         rows=saved, extra={"scored_dataset_id": body.dataset_id,
                                            "scoring_functions": sorted(results)})
    return {"dataset_id": dataset_id, "results": results}


async def dataset_rows(ctx: Context, dataset_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` rows of a dataset whose rows are here (every row when None; at most MAX_ROWS)."""
    dataset = await records.find(ctx.metadata, dataset_id)
    if not dataset.get("readable", True):
        raise InvalidRequest(f"Invalid value: rows of dataset '{dataset_id}' live at a URI this server cannot "
                             "read", param="dataset_id")
    page = await ctx.metadata.list(ROW_KIND, parent=rows_parent(dataset), limit=min(limit or MAX_ROWS, MAX_ROWS),
                                   order="asc")
    if page.has_more and (limit is None or limit > MAX_ROWS):
        raise InvalidRequest(f"Invalid value: dataset '{dataset_id}' has more than {MAX_ROWS} rows; at most "
                             f"{MAX_ROWS} are scored at once", param="dataset_id")
    return page.items
