"""Pieces of raw-text completion requests: prompt forms, choice grammars, best-of selection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ggstack.core.errors import InvalidValueError
from ggstack.inference.generation import Choice, Generation, Prompt


def completion_prompts(prompt: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]) -> list[Prompt]:
    """OpenAI's four prompt forms (a string, strings, a token array, token arrays) as a list of prompts."""
    if isinstance(prompt, str):
        return [prompt]
    items = list(prompt)
    if not items:
        raise InvalidValueError("prompt must not be empty", field="prompt")
    if all(isinstance(p, str) for p in items):
        return [p for p in items if isinstance(p, str)]
    if all(isinstance(p, int) and not isinstance(p, bool) for p in items):
        return [[p for p in items if isinstance(p, int)]]
    if all(isinstance(p, (list, tuple)) for p in items):
        prompts: list[Prompt] = [list(p) for p in items if isinstance(p, (list, tuple))]
        if any(not p for p in prompts):
            raise InvalidValueError("prompt token arrays must not be empty", field="prompt")
        return prompts
    raise InvalidValueError("prompt must be a string, a list of strings, a token array or a list of token arrays",
                            field="prompt")


def choice_grammar(choices: Sequence[str]) -> str:
    """A GBNF grammar whose only sentences are `choices` (vLLM's `guided_choice`)."""
    if not choices or any(not isinstance(c, str) or not c for c in choices):
        raise InvalidValueError("guided_choice must be a non-empty list of non-empty strings", field="guided_choice")
    return "root ::= " + " | ".join(gbnf_literal(c) for c in choices)


def gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal: backslash escapes for quote, backslash, newline, tab, control bytes."""
    named = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    out = [named.get(ch) or (f"\\x{ord(ch):02X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in text]
    return '"' + "".join(out) + '"'


def pick_best(generation: Generation, *, n: int, best_of: int) -> Generation:
    """Keep the `n` choices of each prompt with the highest total logprob, renumbered 0..n-1 per prompt.

    `generation` holds `best_of` samples per prompt (run with logprobs on); usage stays that
    of every sample, since all were generated.
    """
    kept: list[Choice] = []
    for start in range(0, len(generation.choices), best_of):
        group = generation.choices[start:start + best_of]
        prompt_index = start // best_of
        ranked = sorted(group, key=lambda c: c.sum_logprob, reverse=True)[:n]
        kept.extend(replace(c, index=prompt_index * n + j) for j, c in enumerate(ranked))
    return Generation(kept, generation.usage)
