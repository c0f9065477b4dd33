"""Scoring: scoring functions (built in and registered) and the scoring of rows with them.

`functions` holds the definitions and the registry, `basic`/`ifeval`/`judge` the row scorers of
the `basic` and `llm-as-judge` providers, `aggregation` the aggregation functions, and `score`
runs them over rows (the entry point the scoring and eval handlers call).
"""

from ggstack.scoring.functions import ScoringFunctions
from ggstack.scoring.score import MAX_ROWS, plan, score_rows

__all__ = ["MAX_ROWS", "ScoringFunctions", "plan", "score_rows"]
