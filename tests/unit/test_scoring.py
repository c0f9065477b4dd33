"""Scoring functions and aggregations as pure functions (no model): the reference server's shapes."""

from __future__ import annotations

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.scoring import basic
from ggstack.scoring.aggregation import aggregate
from ggstack.scoring.functions import BUILTINS, effective_params, implementation_of
from ggstack.scoring.ifeval import ifeval
from ggstack.scoring.judge import DEFAULT_REGEXES, judge_prompt, rating

MC = BUILTINS["basic::regex_parser_multiple_choice_answer"]["params"]


def test_aggregations_have_the_reference_shapes():
    rows = [{"score": 1.0}, {"score": 0.0}, {"score": 1.0}, {"score": 1.0}]
    assert aggregate(rows, ["accuracy", "average", "median", "categorical_count"]) == {
        "accuracy": {"accuracy": 0.75, "num_correct": 3.0, "num_total": 4},
        "average": {"average": 0.75},
        "median": {"median": 1.0},
        "categorical_count": {"categorical_count": {"0.0": 1, "1.0": 3}},
    }
    weighted = [{"score": 1.0, "weight": 3.0}, {"score": 0.0, "weight": 1.0}]
    assert aggregate(weighted, ["weighted_average"]) == {"weighted_average": {"weighted_average": 0.75}}


def test_judge_ratings_are_text_and_count_by_category():
    rows = [{"score": "4"}, {"score": "2"}, {"score": None}, {"score": "4"}]
    assert aggregate(rows, ["average"]) == {"average": {"average": 10 / 3}}
    assert aggregate(rows, ["categorical_count"])["categorical_count"]["categorical_count"] == {"2": 1, "4": 2, "None": 1}
    with pytest.raises(InvalidValueError, match="numeric"):
        aggregate([{"score": "A"}], ["average"])


def test_equality_and_subset_of():
    assert basic.equality({"expected_answer": "Paris", "generated_answer": "Paris"}, {}) == {"score": 1.0}
    assert basic.equality({"expected_answer": "Paris", "generated_answer": "paris"}, {}) == {"score": 0.0}
    assert basic.subset_of({"expected_answer": "Paris", "generated_answer": "It is Paris."}, {}) == {"score": 1.0}
    with pytest.raises(InvalidValueError, match="generated_answer"):
        basic.equality({"expected_answer": "x"}, {})


@pytest.mark.parametrize(("text", "score"), [
    ("Let me think. Answer: C", 1.0), ("The best answer is C", 1.0), ("answer : c", 0.0),
    ("Respuesta: C", 1.0), ("Answer: B", 0.0), ("C", 0.0),
])
def test_multiple_choice_reads_the_answer_letter(text, score):
    assert basic.regex_parser({"expected_answer": "C", "generated_answer": text}, MC)["score"] == score


@pytest.mark.parametrize(("generated", "expected", "score"), [
    ("So the final answer is $\\boxed{\\frac{1}{2}}$", "0.5", 1.0),
    ("The final answer is $\\boxed{1,000}$", "1000", 1.0),
    ("We get \\boxed{\\dfrac12}.", "\\frac{1}{2}", 1.0),
    ("The final answer is $\\boxed{3}$", "$\\boxed{4}$", 0.0),
    ("no boxed answer", "4", 0.0),
])
def test_math_response_compares_normalised_values(generated, expected, score):
    params = BUILTINS["basic::regex_parser_math_response"]["params"]
    assert basic.math_response({"expected_answer": expected, "generated_answer": generated}, params)["score"] == score


def test_docvqa_normalises_like_vqa():
    row = {"expected_answer": '["Two dollars", "$2"]', "generated_answer": "the 2 dollars."}
    assert basic.docvqa(row, {}) == {"score": 1.0}
    assert basic.docvqa({"expected_answer": '["blue"]', "generated_answer": "red"}, {}) == {"score": 0.0}


def test_ifeval_scores_followed_instructions_with_a_weight():
    row = {"instruction_id_list": ["punctuation:no_comma", "keywords:existence", "length_constraints:number_words"],
           "kwargs": [{}, {"keywords": ["llama"]}, {"num_words": 3, "relation": "less than"}],
           "prompt": "Write about llamas", "generated_answer": "A llama grazes quietly today"}
    assert ifeval(row, {}) == {"score": 2 / 3, "weight": 3.0}
    with pytest.raises(InvalidValueError, match="language:response_language"):
        ifeval({**row, "instruction_id_list": ["language:response_language"], "kwargs": [{}]}, {})


def test_judge_prompt_and_rating():
    row = {"input_query": "2+2?", "expected_answer": "4", "generated_answer": "four"}
    assert "2+2?" in judge_prompt("Q: {input_query} E: {expected_answer} G: {generated_answer}", row)
    with pytest.raises(InvalidValueError, match="prompt_template"):
        judge_prompt("{nope}", row)
    assert rating("Reasoning... Score: 1", DEFAULT_REGEXES) == "1"
    assert rating("no rating", DEFAULT_REGEXES) is None


def test_params_given_with_a_request_replace_or_refine_the_functions_own():
    fn = BUILTINS["basic::regex_parser_multiple_choice_answer"]
    assert effective_params(fn, None) == fn["params"]
    refined = effective_params(fn, {"type": "basic", "aggregation_functions": ["categorical_count"]})
    assert refined["parsing_regexes"] == fn["params"]["parsing_regexes"]
    assert refined["aggregation_functions"] == ["categorical_count"]
    with pytest.raises(InvalidValueError, match="llm_as_judge"):
        effective_params(fn, {"type": "llm_as_judge", "judge_model": "m", "judge_score_regexes": [],
                              "aggregation_functions": []})


def test_registered_functions_pick_their_implementation():
    assert implementation_of({"provider_resource_id": "basic::subset_of"}).name == "subset-of"
    assert implementation_of({"params": {"type": "regex_parser"}}).name == "regex-parser-multiple-choice-answer"
    assert implementation_of({"params": {"type": "llm_as_judge"}}).scorer is None
    with pytest.raises(InvalidValueError, match="provider_scoring_fn_id"):
        implementation_of({"provider_resource_id": "mine", "params": {"type": "basic"}})

