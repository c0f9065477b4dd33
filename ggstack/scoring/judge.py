"""`llm-as-judge`: a registered LLM reads the question, the expected and the generated answer, and a
regex reads its rating (the score is the captured text, as the reference server gives it)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ggstack.core.errors import InvalidValueError
from ggstack.engines.base import SamplingOptions
from ggstack.inference.generation import generate
from ggstack.scoring.basic import Row, column

#: Tokens one verdict may take: enough for a short justification and the rating, bounded so a
#: judge that rambles cannot hold its model for long.
JUDGE_MAX_TOKENS = 256

#: Usable as it stands (the reference's built-in is a placeholder): a 0/1 verdict its regex reads.
DEFAULT_TEMPLATE = (
    "Grade the answer to a question against the expected answer.\n\n"
    "Question: {input_query}\nExpected answer: {expected_answer}\nGiven answer: {generated_answer}\n\n"
    "Reply with 'Score: 1' if the given answer means the same as the expected answer, else 'Score: 0'."
)
DEFAULT_REGEXES = [r"Score:\s*([0-9]+(?:\.[0-9]+)?)"]


def judge_prompt(template: str, row: Row) -> str:
    values = {name: column(row, name) for name in ("input_query", "expected_answer", "generated_answer")}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidValueError(f"prompt_template cannot be filled in ({exc!r}); it may use {{input_query}}, "
                                "{expected_answer} and {generated_answer}, with other braces doubled",
                                field="prompt_template") from None


def rating(text: str, regexes: list[str]) -> str | None:
    for regex in regexes:
        try:
            match = re.search(regex, text)
        except re.error as exc:
            raise InvalidValueError(f"judge_score_regexes {regex!r} does not compile: {exc}",
                                    field="judge_score_regexes") from None
        if match:
            return match.group(1) if match.re.groups else match.group(0)
    return None


async def judge(models: Any, row: Row, params: Mapping[str, Any]) -> dict[str, Any]:
    prompt_text = judge_prompt(params.get("prompt_template") or DEFAULT_TEMPLATE, row)
    engine = await models.chat(params["judge_model"])  # NotFoundError names an unknown model
    prompt = engine.render_chat([{"role": "user", "content": prompt_text}], add_generation_prompt=True)
    options = SamplingOptions(max_tokens=JUDGE_MAX_TOKENS, temperature=0.0)
    feedback = (await generate(engine, [prompt], options)).choices[0].text
    return {"score": rating(feedback, params.get("judge_score_regexes") or []), "judge_feedback": feedback}
