"""IFEval's instruction checks that need no downloaded data (no NLTK models, no language detector).

A row holds `instruction_id_list`, `kwargs` (one dict per instruction), `prompt` and
`generated_answer`; its score is the share of instructions the generation follows and its
weight how many there were (so `weighted_average` is IFEval's instruction-level accuracy).

Not checked here, and refused by name: `language:response_language` (needs a language detector),
`length_constraints:number_sentences` and `change_case:capital_word_frequency` (need NLTK's
tokenizers). `change_case:english_lowercase` / `english_capital` check the case only, not that
the text is English.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.scoring.basic import Row, column, text_column

Check = Callable[[str, Mapping[str, Any], str], bool]


def _relation(count: int, target: Any, relation: Any) -> bool:
    if relation == "less than":
        return count < int(target)
    if relation == "at least":
        return count >= int(target)
    raise InvalidValueError(f"relation {relation!r} is not 'less than' or 'at least'", field="kwargs")


def _mentions(text: str, word: str) -> int:
    return len(re.findall(re.escape(word), text, flags=re.IGNORECASE))


def _paragraphs(text: str, separator: str) -> list[str] | None:
    """Non-empty paragraphs, or None when an empty one sits between two others."""
    parts = [p.strip() for p in re.split(separator, text)]
    while parts and not parts[-1]:
        parts.pop()
    while parts and not parts[0]:
        parts.pop(0)
    return None if any(not p for p in parts) else parts


def _highlights(text: str) -> int:
    spans = re.findall(r"\*[^\n*]*\*", text) + re.findall(r"\*\*[^\n*]*\*\*", text)
    return sum(1 for span in spans if span.strip("*").strip())


def _json(text: str) -> bool:
    body = re.sub(r"^```(?:json|Json|JSON)?\s*|\s*```$", "", text.strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _postscript(text: str, marker: str) -> bool:
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker.lower()) + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


def _nth_first_word(text: str, k: Mapping[str, Any]) -> bool:
    paragraphs = _paragraphs(text, r"\n\n")
    nth = int(k["nth_paragraph"])
    if not paragraphs or len(paragraphs) != int(k["num_paragraphs"]) or nth > len(paragraphs):
        return False
    first = paragraphs[nth - 1].split()[0].lstrip("'\"").rstrip(".,!?'\"").lower()
    return first == str(k["first_word"]).lower()


def _two_responses(text: str) -> bool:
    parts = [p.strip() for p in text.split("******")]
    answers = [p for p in parts if p]
    return len(answers) == 2 and answers[0] != answers[1] and len(parts) <= 3


CHECKS: dict[str, Check] = {
    "keywords:existence": lambda t, k, p: all(_mentions(t, w) for w in k["keywords"]),
    "keywords:frequency": lambda t, k, p: _relation(_mentions(t, k["keyword"]), k["frequency"], k["relation"]),
    "keywords:forbidden_words": lambda t, k, p: not any(
        re.search(r"\b" + re.escape(w) + r"\b", t, flags=re.IGNORECASE) for w in k["forbidden_words"]),
    "keywords:letter_frequency": lambda t, k, p: _relation(
        t.lower().count(str(k["letter"]).lower()), k["let_frequency"], k["let_relation"]),
    "length_constraints:number_words": lambda t, k, p: _relation(len(re.findall(r"\w+", t)), k["num_words"], k["relation"]),
    "length_constraints:number_paragraphs": lambda t, k, p: len(_paragraphs(t, r"\s?\*\*\*\s?") or []) == int(k["num_paragraphs"]),
    "length_constraints:nth_paragraph_first_word": lambda t, k, p: _nth_first_word(t, k),
    "detectable_content:number_placeholders": lambda t, k, p: len(re.findall(r"\[.*?\]", t)) >= int(k["num_placeholders"]),
    "detectable_content:postscript": lambda t, k, p: _postscript(t, str(k["postscript_marker"])),
    "detectable_format:number_bullet_lists": lambda t, k, p: len(re.findall(r"^\s*\*[^*].*$", t, flags=re.MULTILINE))
    + len(re.findall(r"^\s*-.*$", t, flags=re.MULTILINE)) == int(k["num_bullets"]),
    "detectable_format:constrained_response": lambda t, k, p: any(
        answer in t for answer in ("My answer is yes.", "My answer is no.", "My answer is maybe.")),
    "detectable_format:number_highlighted_sections": lambda t, k, p: _highlights(t) >= int(k["num_highlights"]),
    "detectable_format:multiple_sections": lambda t, k, p: len(
        re.split(r"\s?" + re.escape(str(k["section_spliter"])) + r"\s?\d+\s?", t)) - 1 >= int(k["num_sections"]),
    "detectable_format:json_format": lambda t, k, p: _json(t),
    "detectable_format:title": lambda t, k, p: any(m.strip("<>").strip() for m in re.findall(r"<<[^\n]+>>", t)),
    "combination:repeat_prompt": lambda t, k, p: t.lower().startswith(str(k["prompt_to_repeat"]).strip().lower()),
    "combination:two_responses": lambda t, k, p: _two_responses(t),
    "startend:end_checker": lambda t, k, p: t.strip("\"").lower().endswith(str(k["end_phrase"]).strip().lower()),
    "startend:quotation": lambda t, k, p: len(t) > 1 and t[0] == '"' and t[-1] == '"',
    "punctuation:no_comma": lambda t, k, p: "," not in t,
    "change_case:english_lowercase": lambda t, k, p: t == t.lower(),
    "change_case:english_capital": lambda t, k, p: t == t.upper(),
}


def follows(instruction: str, text: str, kwargs: Mapping[str, Any], prompt: str) -> bool:
    check = CHECKS.get(instruction)
    if check is None:
        raise InvalidValueError(f"ifeval instruction '{instruction}' is not checked here; the checked ones are "
                                f"{', '.join(CHECKS)}", field="instruction_id_list")
    try:
        return bool(text) and check(text, kwargs, prompt)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidValueError(f"kwargs for ifeval instruction '{instruction}' are unusable: {exc!r}",
                                field="kwargs") from None


def ifeval(row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    instructions = column(row, "instruction_id_list")
    kwargs = row.get("kwargs") or [{}] * len(instructions)
    if not isinstance(instructions, list) or not isinstance(kwargs, list) or len(kwargs) != len(instructions):
        raise InvalidValueError("instruction_id_list and kwargs must be lists of the same length",
                                field="instruction_id_list")
    text = text_column(row, "generated_answer").strip()
    prompt = str(row.get("prompt", ""))
    followed = [follows(i, text, {k: v for k, v in (kw or {}).items() if v is not None}, prompt)
                for i, kw in zip(instructions, kwargs, strict=True)]
    if not followed:
        return {"score": 0.0, "weight": 0.0}
    return {"score": sum(followed) / len(followed), "weight": float(len(followed))}
