"""Evaluation: candidates (a model or an agent) answer benchmark rows, scoring functions score them.

`candidates` turns a benchmark config's candidate into an answer function, `jobs` runs
evaluations (synchronously for evaluate_rows, as persisted background jobs for run_eval).
"""

from ggstack.eval.candidates import Answer, model_answer
from ggstack.eval.jobs import EvalJobs, evaluate

__all__ = ["Answer", "EvalJobs", "evaluate", "model_answer"]
