"""The spec's filtering functions, over the scores of one dialog's candidate answers.

A score is the candidate's per-token probability (the geometric mean, exp of the mean token
logprob), in (0, 1]: how sure the model was of what it wrote. Each function returns the
indexes of the candidates it keeps, best first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

#: top_k keeps this many; top_k_top_p caps its top_p set at this many.
TOP_K = 2
#: top_p keeps the best candidates until their share of the summed scores reaches this.
TOP_P = 0.9


def ranked(scores: Sequence[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def keep_all(scores: Sequence[float]) -> list[int]:
    return ranked(scores)


def keep_random(scores: Sequence[float]) -> list[int]:
    """One candidate, chosen uniformly: a sample that ignores the model's confidence."""
    return [random.randrange(len(scores))] if scores else []


def top_k(scores: Sequence[float]) -> list[int]:
    return ranked(scores)[:TOP_K]


def top_p(scores: Sequence[float]) -> list[int]:
    total = sum(scores)
    kept, mass = [], 0.0
    for i in ranked(scores):
        kept.append(i)
        mass += scores[i]
        if total <= 0 or mass / total >= TOP_P:
            break
    return kept


def top_k_top_p(scores: Sequence[float]) -> list[int]:
    return top_p(scores)[:TOP_K]


def sigmoid(scores: Sequence[float]) -> list[int]:
    """Those whose standardised score passes a sigmoid at 0.5, i.e. at or above the mean."""
    if not scores:
        return []
    mean = sum(scores) / len(scores)
    spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    if spread == 0:
        return ranked(scores)
    return [i for i in ranked(scores) if 1 / (1 + math.exp(-(scores[i] - mean) / spread)) >= 0.5]


FILTERS: dict[str, Callable[[Sequence[float]], list[int]]] = {
    "none": keep_all, "random": keep_random, "top_k": top_k, "top_p": top_p, "top_k_top_p": top_k_top_p,
    "sigmoid": sigmoid,
}
