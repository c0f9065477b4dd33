"""Eval candidates' row handling as pure functions (no model)."""

from __future__ import annotations

import json

import pytest

from ggstack.core.errors import InvalidValueError
from ggstack.eval.candidates import chat_turns, sampling_of


def test_eval_rows_become_one_system_turn_then_the_user_turns():
    row = {"chat_completion_input": json.dumps([{"role": "system", "content": "Be brief."},
                                                {"role": "assistant", "content": "ignored"},
                                                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}])}
    assert chat_turns(row, {"role": "system", "content": "Answer with a letter."}) == [
        {"role": "system", "content": "Answer with a letter.\n\nBe brief."}, {"role": "user", "content": "Hi"}]
    with pytest.raises(InvalidValueError, match="no user message"):
        chat_turns({"chat_completion_input": "[]"}, None)


def test_a_candidate_must_bound_its_answers():
    with pytest.raises(InvalidValueError, match="max_tokens"):
        sampling_of({"sampling_params": {"strategy": {"type": "greedy"}}})
    assert sampling_of({"sampling_params": {"max_tokens": 5}}).max_tokens == 5
