"""A request the schema refuses gets a 400 that says what is wrong where, not "not valid under any
of the given schemas": inside a union, the branch the value means is the one described."""

from __future__ import annotations

from typing import Any

import pytest

from ggstack.http import schemas

HI = [{"role": "user", "content": "hi"}]


def problem(body: dict[str, Any]) -> tuple[str, str | None]:
    pointer = schemas.request_body_pointer("llama-stack-stable", "/v1/chat/completions", "post", "application/json")
    error = schemas.first_problem(schemas.validator("llama-stack-stable", pointer), {"model": "m", **body})
    assert error is not None
    return schemas.describe(error)


@pytest.mark.parametrize("body, message", [
    # anyOf [object, null]: the object branch says which key is wrong
    ({"messages": HI, "logit_bias": {"x": 1}}, "logit_bias: 'x' does not match '^(0|[1-9][0-9]{0,9})$'"),
    # a discriminated union: the branch its `role` / `type` names
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0: 'tool_call_id' is a required property"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages.0.content.0: 'text' is a required property"),
    ({"messages": HI, "response_format": {"type": "json_schema"}},
     "response_format: 'json_schema' is a required property"),
    # no branch fits the value's type, or the discriminator names none: the union itself is the problem
    ({"messages": HI, "stop": 5}, "stop: 5 is not valid under any of the given schemas"),
    ({"messages": HI, "response_format": {"type": {"a": 1}}},
     "response_format: {'type': {'a': 1}} is not valid under any of the given schemas"),
    ({"messages": HI, "response_format": {"type": "AAA"}},
     "response_format: {'type': 'AAA'} is not valid under any of the given schemas"),
])
def test_the_meant_branch_is_described(body: dict[str, Any], message: str) -> None:
    assert problem(body)[0] == message


def test_top_logprobs_without_logprobs_names_logprobs() -> None:
    assert problem({"messages": HI, "top_logprobs": 2}) == ("'logprobs' is a required property", None)
    assert problem({"messages": HI, "top_logprobs": 2, "logprobs": False})[0] == "logprobs: True was expected"
