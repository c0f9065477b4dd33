"""The `basic` provider's row scorers: each reads a row's columns and gives `{"score": 0.0 or 1.0}`.

Every scorer takes `(row, params)`, where `params` is the function's effective ScoringFnParams as a
dict, and raises InvalidValueError naming the column when a row cannot be scored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ggstack.core.errors import InvalidValueError

Row = Mapping[str, Any]

#: Answer-letter cues in several languages, each followed by the letter (A-D, or its Arabic,
#: Bengali or full-width forms); the reference server's multiple-choice regexes are built this way.
CHOICE_CUES = (
    r"The best answer is ", r"Answer\s*:", r"Antwort\s*:", r"Respuesta\s*:", r"Risposta\s*:",
    r"Réponse\s*:", r"Resposta\s*:", r"Jawaban\s*:", r"Jibu\s*:", r"Idahun\s*:", r"답변\s*:", r"정답\s*:",
    r"답\s*:", r"答案\s*[:：]", r"答\s*[:：]", r"答复\s*：", r"答え\s*[:：]", r"回答\s*[:：]", r"解答\s*:",
    r"উত্তর\s*:", r"উত্তরঃ", r"उत्तर\s*:", r"الإجابة:", r"الجواب:", r"إجابة:", r"الإجابة النهائية:",
    r"الإجابة الصحيحة:", r"الإجابة هي:",
)
CHOICE_LETTER = r"\s*([A-D]|[أ-د]|[অবডঢ]|[ＡＢＣＤ])"
MULTIPLE_CHOICE_REGEXES = [f"(?i){cue}{CHOICE_LETTER}" for cue in CHOICE_CUES]

#: "... final answer is $\boxed{X}$": the reference server's math answer regex (group X).
MATH_REGEXES = [r".*final answer is:?\s*\$\\boxed{(?P<X>.*)}\$"]


def column(row: Row, name: str) -> Any:
    if name not in row:
        raise InvalidValueError(f"the row has no '{name}' column", field=name)
    return row[name]


def text_column(row: Row, name: str) -> str:
    value = column(row, name)
    if not isinstance(value, str):
        raise InvalidValueError(f"column '{name}' must be text, not {type(value).__name__}", field=name)
    return value


def equality(row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    same = column(row, "expected_answer") == column(row, "generated_answer")
    return {"score": 1.0 if same else 0.0}


def subset_of(row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    """1.0 when the expected answer appears inside the generated one (a substring, or a list item)."""
    expected, generated = column(row, "expected_answer"), column(row, "generated_answer")
    if isinstance(generated, str) and not isinstance(expected, str):
        raise InvalidValueError("column 'expected_answer' must be text when generated_answer is", field="expected_answer")
    if not isinstance(generated, str | list):
        raise InvalidValueError("column 'generated_answer' must be text or a list", field="generated_answer")
    return {"score": 1.0 if expected in generated else 0.0}


def parsed_answer(text: str, regexes: list[str]) -> str | None:
    """What the first matching regex captures (its group X, else its first group, else the match)."""
    for regex in regexes:
        match = compiled(regex).search(text)
        if match:
            if "X" in match.re.groupindex:
                return match.group("X")
            return match.group(1) if match.re.groups else match.group(0)
    return None


def compiled(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex, re.DOTALL)
    except re.error as exc:
        raise InvalidValueError(f"regex {regex!r} does not compile: {exc}", field="parsing_regexes") from None


def regex_parser(row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    """The answer a regex finds in the generation, compared with the expected answer (both stripped)."""
    expected = str(column(row, "expected_answer")).strip()
    found = parsed_answer(text_column(row, "generated_answer"), params.get("parsing_regexes") or [])
    return {"score": 1.0 if found is not None and found.strip() == expected else 0.0}


def math_response(row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    """The generated final answer (the regex's, else the last \\boxed{}) equals the expected one
    once both are normalised: LaTeX spacing and wrappers dropped, fractions and numbers compared as values."""
    generated = text_column(row, "generated_answer")
    found = parsed_answer(generated, params.get("parsing_regexes") or MATH_REGEXES)
    if found is None:
        found = last_boxed(generated)
    expected = str(column(row, "expected_answer"))
    expected = last_boxed(expected) or expected
    return {"score": 1.0 if found is not None and same_math(found, expected) else 0.0}


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}, braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return None


_LATEX_DROPS = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\ ", "^\\circ", "^{\\circ}", "\\%", "%", "$")


def normal_math(answer: str) -> str:
    text = answer.strip()
    text = re.sub(r"\\(?:text|mbox|mathrm)\{([^}]*)\}", r"\1", text)
    for drop in _LATEX_DROPS:
        text = text.replace(drop, "")
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    return re.sub(r"\s+", "", text).rstrip(".")


def math_value(text: str) -> Fraction | None:
    """A plain number, a/b or \\frac{a}{b} (optionally negative) as an exact value."""
    match = re.fullmatch(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", text) or re.fullmatch(r"(-?)([\d.]+)/([\d.]+)", text)
    try:
        if match:
            value = Fraction(match.group(2)) / Fraction(match.group(3))
            return -value if match.group(1) else value
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def same_math(found: str, expected: str) -> bool:
    a, b = normal_math(found), normal_math(expected)
    if a == b:
        return True
    x, y = math_value(a), math_value(b)
    return x is not None and x == y


# -- docvqa ------------------------------------------------------------------------------------

NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
#: Words that change no answer's meaning in the DocVQA/VQA convention (articles and a few prepositions).
FILLER_WORDS = {"a", "an", "the", "to", "in", "from", "by"}


def normal_vqa(answer: str) -> str:
    """Lower case; apostrophes kept, other punctuation a space; thousands commas and full stops
    outside numbers gone; number words as digits; filler words dropped."""
    text = re.sub(r"(\d),(\d)", r"\1\2", answer.lower())
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", "", text)
    text = re.sub(r"[^\w\s'.]", " ", text)
    words = [NUMBER_WORDS.get(word, word) for word in text.split()]
    return " ".join(word for word in words if word not in FILLER_WORDS)


def docvqa(row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    """1.0 when the normalised generation equals any accepted answer; `expected_answer` is the
    accepted answers as a JSON list (as DocVQA ships them), a list, or one answer."""
    expected = column(row, "expected_answer")
    if isinstance(expected, str):
        try:
            expected = json.loads(expected)
        except ValueError:
            expected = [expected]
    answers = expected if isinstance(expected, list) else [expected]
    generated = normal_vqa(text_column(row, "generated_answer"))
    return {"score": 1.0 if any(generated == normal_vqa(str(a)) for a in answers) else 0.0}
