"""`dumps` writes what `json` would have written, in value, and refuses what it refused."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from ggstack.http.render import dumps, jsonable, sse_frame

SAMPLES: list[Any] = [
    {"object": "list", "data": [{"embedding": [random.Random(7).gauss(0, 0.05) for _ in range(384)], "index": 0}]},
    {"text": "é \u2028 \x7f \x1f \" \\ \n \t", "n": 2**70, "neg": -1, "flag": True, "none": None, "empty": {}},
    [1e-05, 1e-7, 1e16, 1e22, 5e-324, 1.7976931348623157e308, -0.0, 0.1, 123.456],
    {"words": ["NaN", "Infinity", "-Infinity", "the NaN of it"]},
    "plain",
]


@pytest.mark.parametrize("data", SAMPLES)
def test_the_same_document_as_json_writes(data: Any) -> None:
    assert json.loads(dumps(data)) == data


@pytest.mark.parametrize("data", [SAMPLES[1], SAMPLES[3], SAMPLES[4]])
def test_the_same_bytes_as_json_writes_where_no_float_is_in_it(data: Any) -> None:
    assert dumps(data) == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def test_floats_keep_their_exact_values() -> None:
    rng = random.Random(3)
    values = [rng.gauss(0, 0.05) for _ in range(20000)] + [rng.uniform(-1e-4, 1e-4) for _ in range(2000)]
    assert json.loads(dumps(values)) == values


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        dumps({"score": [0.5, value]})


def test_a_lone_surrogate_is_written_escaped() -> None:
    written = dumps({"echo": "a\udbc6b", "more": "é"})
    assert written == b'{"echo":"a\\udbc6b","more":"\\u00e9"}'


def test_what_json_cannot_write_is_still_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})


def test_an_sse_frame_is_one_compact_json_line() -> None:
    assert sse_frame(jsonable({"choices": [{"delta": {"content": "hi"}, "logprobs": None}]})) == \
        b'data: {"choices":[{"delta":{"content":"hi"},"logprobs":null}]}\n\n'
