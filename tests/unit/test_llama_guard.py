"""The Llama Guard prompt, verdict grammar and verdict reading, without a model."""

from __future__ import annotations

import math

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.inference.logprobs import TokenLogprob
from ggstack.safety.llama_guard import categories, grammar, read_verdict, task_text


def test_default_categories_minus_excluded_by_code_or_name() -> None:
    kept = categories({"excluded_categories": ["S1", "Hate"]})
    assert [c.code for c in kept][:2] == ["S2", "S3"] and "S10" not in [c.code for c in kept]
    assert len(kept) == 12


def test_custom_categories_and_bad_params_name_the_field() -> None:
    assert [(c.code, c.name) for c in categories({"categories": ["Cooking", {"name": "Weather"}]})] == \
        [("S1", "Cooking"), ("S2", "Weather")]
    with pytest.raises(InvalidValueError, match="S99") as caught:
        categories({"excluded_categories": ["S99"]})
    assert caught.value.field == "params.excluded_categories"
    with pytest.raises(InvalidValueError, match="every category"):
        categories({"categories": ["A"], "excluded_categories": ["A"]})


def test_prompt_names_categories_turns_and_the_judged_role() -> None:
    text = task_text([("user", "hi"), ("assistant", "hello")], categories({}))
    assert "S14: Code Interpreter Abuse." in text and "User: hi\n\nAgent: hello" in text
    assert "ONLY THE LAST Agent message" in text
    assert "'User' messages" in task_text([("user", "hi")], categories({}))


def test_grammar_lists_longer_codes_first() -> None:
    rule = grammar(categories({}))
    assert rule.startswith('root ::= "safe" | "unsafe\\n" code ("," code)*')
    assert rule.index('"S14"') < rule.index('"S1"')


def test_verdict_probabilities_come_from_logprobs() -> None:
    cats = categories({})
    tokens = [TokenLogprob("unsafe", math.log(0.6), (("safe", math.log(0.2)), ("I", math.log(0.1)))),
              TokenLogprob("\n", 0.0), TokenLogprob("S", math.log(0.9)), TokenLogprob("10", math.log(0.5))]
    reading = read_verdict("unsafe\nS10", tokens, cats)
    assert reading.unsafe and reading.codes == ("S10",)
    assert reading.unsafe_probability == pytest.approx(0.75)
    assert reading.code_probability["S10"] == pytest.approx(0.75 * 0.9 * 0.5)
    safe = read_verdict("safe", [TokenLogprob("safe", math.log(0.5), (("x", math.log(0.01)),))], cats)
    assert not safe.unsafe and 0.0 < safe.unsafe_probability < 0.05
