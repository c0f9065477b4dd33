"""Token log probabilities: taken from engine events, shaped for the OpenAI and Llama Stack answers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ggstack.engines.base import TokenEvent

#: OpenAI's stand-in for "very unlikely" (JSON has no -Infinity, and our encoder refuses it).
FLOOR = -9999.0


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, logprob and the likeliest alternatives (best first)."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def _finite(value: float) -> float:
    return value if math.isfinite(value) else FLOOR


def from_event(event: TokenEvent) -> TokenLogprob | None:
    """The event's logprob as plain floats, or None when logprobs were not asked for."""
    if event.logprob is None:
        return None
    top = tuple((text, _finite(lp)) for text, lp in (event.top_logprobs or ()))
    return TokenLogprob(event.text, _finite(event.logprob), top)


def openai_token(entry: TokenLogprob) -> dict[str, Any]:
    """An `OpenAITokenLogProb` (chat and completions share it in these specs)."""
    return {"token": entry.token, "bytes": list(entry.token.encode("utf-8")), "logprob": entry.logprob,
            "top_logprobs": [{"token": t, "bytes": list(t.encode("utf-8")), "logprob": lp} for t, lp in entry.top]}


def openai_logprobs(entries: Iterable[TokenLogprob]) -> dict[str, Any]:
    """`OpenAIChoiceLogprobs`: `{"content": [...]}`."""
    return {"content": [openai_token(e) for e in entries]}


def logprobs_by_token(entry: TokenLogprob) -> dict[str, float]:
    """The legacy Llama Stack `TokenLogProbs.logprobs_by_token`: the token and its alternatives."""
    table = dict(entry.top)
    table.setdefault(entry.token, entry.logprob)
    return table
