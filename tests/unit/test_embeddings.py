"""The embeddings handlers' pure parts: input shapes, dimensions, encodings. No model is loaded."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from generated.models.dell_pro_ai_studio import CreateEmbeddingRequest
from generated.models.llama_stack_deprecated import OpenaiEmbeddingsRequest
from ggstack.http.errors import InvalidRequest
from handlers.inference.embeddings import (
    MAX_INPUTS,
    check_dimensions,
    check_encoding,
    embedding_inputs,
    encoded,
    shaped,
)


@pytest.mark.parametrize(("value", "expected"), [
    ("hello", ["hello"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
])
def test_inputs_of_every_shape_become_a_list(value, expected):
    assert embedding_inputs(value) == expected


def test_dell_root_models_are_unwrapped():
    body = CreateEmbeddingRequest(model="m", input=[[5, 6], [7]])
    assert embedding_inputs(body.input) == [[5, 6], [7]]
    assert embedding_inputs(CreateEmbeddingRequest(model="m", input=["x", "y"]).input) == ["x", "y"]
    assert embedding_inputs(CreateEmbeddingRequest(model="m", input=[9, 8]).input) == [[9, 8]]


def test_openai_request_strings_pass_through():
    assert embedding_inputs(OpenaiEmbeddingsRequest(model="m", input="one").input) == ["one"]


@pytest.mark.parametrize("value", [[], ["a", 1], [[1], "a"], [True, False], [[1, 2.5]], [None], 3])
def test_bad_inputs_are_400_naming_input(value):
    with pytest.raises(InvalidRequest) as error:
        embedding_inputs(value)
    assert error.value.param == "input"


@pytest.mark.parametrize(("value", "index"), [("", 0), (["a", ""], 1)])
def test_empty_strings_are_400_naming_the_input(value, index):
    with pytest.raises(InvalidRequest, match=f"input {index} is an empty string"):
        embedding_inputs(value)


def test_more_than_the_input_limit_is_400_with_counts():
    with pytest.raises(InvalidRequest, match=f"{MAX_INPUTS + 1} items; at most {MAX_INPUTS}"):
        embedding_inputs(["x"] * (MAX_INPUTS + 1))
    assert len(embedding_inputs(["x"] * MAX_INPUTS)) == MAX_INPUTS


def test_encoding_defaults_to_float_and_rejects_others():
    assert check_encoding(None) == "float"
    assert check_encoding("base64") == "base64"
    with pytest.raises(InvalidRequest) as error:
        check_encoding("hex")
    assert error.value.param == "encoding_format"


def test_dimensions_within_the_model_only():
    check_dimensions(None, 384, "m")
    check_dimensions(384, 384, "m")
    check_dimensions(1, 384, "m")
    with pytest.raises(InvalidRequest, match="dimensions 385 is more than model 'm' has \\(384\\)"):
        check_dimensions(385, 384, "m")
    with pytest.raises(InvalidRequest, match="at least 1"):
        check_dimensions(0, 384, "m")


def unit_rows(n: int, d: int, seed: int = 0) -> list[list[float]]:
    rows = np.random.default_rng(seed).normal(size=(n, d))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).tolist()


def test_truncation_keeps_the_prefix_direction_and_renormalises():
    rows = unit_rows(3, 16)
    out = shaped(rows, 4)
    assert out.shape == (3, 4) and out.dtype == np.dtype("<f4")
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    prefix = np.asarray(rows)[:, :4]
    assert np.allclose(out, prefix / np.linalg.norm(prefix, axis=1, keepdims=True), atol=1e-6)


def test_full_dimension_is_unchanged_and_a_zero_prefix_stays_zero():
    rows = unit_rows(2, 8)
    assert np.allclose(shaped(rows, None), rows, atol=1e-7)
    assert np.allclose(shaped(rows, 8), rows, atol=1e-7)
    zero_prefix = [[0.0, 0.0, 0.6, 0.8]]
    assert shaped(zero_prefix, 2).tolist() == [[0.0, 0.0]]


def test_base64_is_little_endian_float32_of_the_same_numbers():
    matrix = shaped(unit_rows(2, 8), None)
    floats = encoded(matrix, "float")
    strings = encoded(matrix, "base64")
    for row, text in zip(floats, strings, strict=True):
        raw = base64.b64decode(text)
        assert len(raw) == 8 * 4
        assert np.frombuffer(raw, dtype="<f4").tolist() == row  # exactly, not approximately
    one = base64.b64encode(b"\x00\x00\x80\x3f").decode()  # 1.0 as little-endian float32
    assert encoded(np.asarray([[1.0]], dtype="<f4"), "base64") == [one]
