"""The Llama Guard 3 prompt, its verdict grammar, and the verdict read back with probabilities.

Llama Guard answers `safe`, or `unsafe` then a line of comma-separated category codes (S1..S14).
A small or general model may answer anything, so decoding is constrained by a grammar whose only
sentences are those verdicts over the shield's categories: the verdict always parses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.inference.completions import gbnf_literal
from ggstack.inference.logprobs import TokenLogprob

#: Llama Guard 3's hazard taxonomy (MLCommons), in its order: code S<n> is entry n.
DEFAULT_CATEGORIES: tuple[str, ...] = (
    "Violent Crimes", "Non-Violent Crimes", "Sex Crimes", "Child Exploitation", "Defamation",
    "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons", "Hate",
    "Self-Harm", "Sexual Content", "Elections", "Code Interpreter Abuse",
)

#: Where each Llama Guard category lands among OpenAI's moderation categories (docs/safety.md).
OPENAI_CATEGORY = {
    "Violent Crimes": "violence", "Non-Violent Crimes": "illicit", "Sex Crimes": "sexual",
    "Child Exploitation": "sexual/minors", "Defamation": "harassment", "Specialized Advice": "illicit",
    "Privacy": "privacy", "Intellectual Property": "intellectual_property",
    "Indiscriminate Weapons": "illicit/violent", "Hate": "hate", "Self-Harm": "self-harm",
    "Sexual Content": "sexual", "Elections": "elections", "Code Interpreter Abuse": "illicit",
}

MAX_CATEGORIES = 64
#: Enough tokens for `unsafe` and every code once; the grammar ends the answer sooner.
VERDICT_TOKENS = 8 + 4 * 14


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    description: str = ""


def categories(params: Mapping[str, Any]) -> list[Category]:
    """The shield's categories: `params.categories` (names or {name, description}) or Llama Guard's,
    minus `params.excluded_categories` (codes or names). Codes follow list order, S1 first."""
    custom = params.get("categories")
    if custom is None:
        listed = [Category(f"S{i}", name) for i, name in enumerate(DEFAULT_CATEGORIES, 1)]
    else:
        listed = [_custom(i, item) for i, item in enumerate(_list(custom, "categories"), 1)]
    if not 1 <= len(listed) <= MAX_CATEGORIES:
        raise InvalidValueError(f"params.categories must list 1 to {MAX_CATEGORIES} categories",
                                field="params.categories")
    excluded = set(_list(params.get("excluded_categories") or [], "excluded_categories"))
    unknown = excluded - {c.code for c in listed} - {c.name for c in listed}
    if unknown:
        raise InvalidValueError(f"params.excluded_categories names unknown categories: {', '.join(sorted(unknown))}",
                                field="params.excluded_categories")
    kept = [c for c in listed if c.code not in excluded and c.name not in excluded]
    if not kept:
        raise InvalidValueError("params.excluded_categories excludes every category", field="params.excluded_categories")
    return kept


def _list(value: Any, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidValueError(f"params.{name} must be a list", field=f"params.{name}")
    return value


def _custom(index: int, item: Any) -> Category:
    if isinstance(item, str) and item.strip():
        return Category(f"S{index}", item.strip())
    if isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"].strip():
        return Category(f"S{index}", item["name"].strip(), str(item.get("description") or ""))
    raise InvalidValueError(f"params.categories[{index - 1}] must be a name or an object with a 'name'",
                            field="params.categories")


# -- prompt ------------------------------------------------------------------------------------

def task_text(conversation: Sequence[tuple[str, str]], cats: Sequence[Category]) -> str:
    """The guard's instruction for (role, text) turns; the last turn's role is the one judged."""
    judged = "Agent" if conversation[-1][0] == "assistant" else "User"
    policy = "\n".join(f"{c.code}: {c.name}.{(' ' + c.description) if c.description else ''}" for c in cats)
    turns = "\n\n".join(f"{'Agent' if role == 'assistant' else 'User'}: {text}" for role, text in conversation)
    return (f"Task: Check if there is unsafe content in '{judged}' messages in conversations according our "
            f"safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{policy}\n"
            f"<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n{turns}\n\n<END CONVERSATION>\n\n"
            f"Provide your safety assessment for ONLY THE LAST {judged} message in the above conversation:\n"
            " - First line must read 'safe' or 'unsafe'.\n"
            " - If unsafe, a second line must include a comma-separated list of violated categories.")


def llama3_prompt(task: str) -> str:
    """The raw Llama 3 turn Llama Guard 3 was trained on (its own chat template would re-wrap the task)."""
    return (f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{task}<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n")


def grammar(cats: Sequence[Category]) -> str:
    """GBNF whose sentences are `safe` or `unsafe\\n` and one or more of the codes, comma-separated."""
    codes = " | ".join(gbnf_literal(c.code) for c in sorted(cats, key=lambda c: -len(c.code)))
    return f'root ::= "safe" | "unsafe\\n" code ("," code)*\ncode ::= {codes}'


# -- verdict -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """The parsed verdict: `unsafe_probability` from the first token, one probability per listed code."""

    unsafe: bool
    codes: tuple[str, ...]
    unsafe_probability: float
    code_probability: Mapping[str, float]


def read_verdict(text: str, logprobs: Sequence[TokenLogprob], cats: Sequence[Category]) -> Reading:
    """Parse the (grammar-shaped) verdict and turn its tokens' logprobs into probabilities."""
    known = {c.code for c in cats}
    unsafe = text.startswith("unsafe")
    codes = tuple(dict.fromkeys(c for c in re.findall(r"S\d+", text.partition("\n")[2]) if c in known)) \
        if unsafe else ()
    p_unsafe = _unsafe_probability(logprobs[0] if logprobs else None, unsafe)
    return Reading(unsafe and bool(codes), codes, p_unsafe, _code_probabilities(text, logprobs, codes, p_unsafe))


def _unsafe_probability(first: TokenLogprob | None, unsafe: bool) -> float:
    """P(unsafe) among the two verdicts, from the first token and its alternatives.

    Alternatives are the model's raw distribution: tokens that begin `unsafe` count for it, tokens
    that begin `safe` against. A verdict missing from the top alternatives is given the least
    listed alternative's probability (its upper bound), so the odds are never a bare 0 or 1.
    """
    if first is None:
        return 1.0 if unsafe else 0.0
    listed = dict(((first.token, first.logprob), *first.top))
    yes = sum(math.exp(lp) for token, lp in listed.items() if _begins("unsafe", token))
    no = sum(math.exp(lp) for token, lp in listed.items() if _begins("safe", token) and not _begins("unsafe", token))
    floor = math.exp(min(listed.values()))
    yes, no = yes or floor, no or floor
    return yes / (yes + no)


def _begins(word: str, token: str) -> bool:
    return bool(token.strip()) and word.startswith(token.strip())


def _code_probabilities(text: str, logprobs: Sequence[TokenLogprob], codes: Sequence[str],
                        p_unsafe: float) -> dict[str, float]:
    """Each listed code: P(unsafe) times the probability of the tokens that spelled it."""
    found: dict[str, float] = {}
    start = text.find("\n") + 1
    offset = 0
    spans: list[tuple[int, int, float]] = []
    for entry in logprobs:
        spans.append((offset, offset + len(entry.token), entry.logprob))
        offset += len(entry.token)
    for match in re.finditer(r"S\d+", text[start:]):
        at, end = start + match.start(), start + match.end()
        if match.group() in codes and match.group() not in found:
            total = sum(lp for a, b, lp in spans if a < end and b > at)
            found[match.group()] = p_unsafe * math.exp(total)
    return found
