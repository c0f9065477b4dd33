"""Request parsing and error rendering: the parts of the route layer that need no server."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from ggstack.http.errors import InvalidRequest, NotFound, Overloaded
from ggstack.http.operations import Param
from ggstack.http.render import error_body, error_shape_for_path
from ggstack.http.routing import describe_validation_error, set_form_field


def test_integer_query_param_is_converted() -> None:
    assert Param("limit", "query", False, {"type": "integer"}).parse(["20"]) == 20


def test_non_integer_query_param_is_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        Param("limit", "query", False, {"type": "integer"}).parse(["ten"])
    assert "limit" in caught.value.message and caught.value.param == "limit"


def test_enum_query_param_outside_enum_is_400() -> None:
    with pytest.raises(InvalidRequest, match="order"):
        Param("order", "query", False, {"type": "string", "enum": ["asc", "desc"]}).parse(["up"])


def test_boolean_and_array_params() -> None:
    assert Param("x", "query", False, {"type": "boolean"}).parse(["true"]) is True
    assert Param("ids", "query", False, {"type": "array", "items": {"type": "integer"}}).parse(["1", "2"]) == [1, 2]


def test_llama_stack_error_has_only_the_declared_keys() -> None:
    body = error_body(NotFound("Model 'x' not found"), "llama_stack")
    assert body == {"status": 404, "title": "Not Found", "detail": "Model 'x' not found"}


def test_llama_stack_error_mentions_param_in_detail() -> None:
    body = error_body(InvalidRequest("must be positive", param="limit"), "llama_stack")
    assert set(body) == {"status", "title", "detail"} and "limit" in body["detail"]


def test_dell_error_shape() -> None:
    body = error_body(InvalidRequest("bad model", param="model"), "dell")
    assert body == {"message": "bad model", "type": "invalid_request_error", "param": "model", "code": "400"}


def test_overloaded_carries_retry_after() -> None:
    assert Overloaded("busy").headers["Retry-After"] == "1"


@pytest.mark.parametrize(("path", "shape"), [
    ("/v1/openai/models", "dell"),
    ("/v1/llamastack/inference/chat-completion", "dell"),
    ("/v1/performance", "dell"),
    ("/v1/openai/v1/models", "llama_stack"),
    ("/v1/models", "llama_stack"),
])
def test_error_shape_follows_the_path_family(path: str, shape: str) -> None:
    assert error_shape_for_path(path) == shape


def test_nested_form_fields_fold_into_objects() -> None:
    fields: dict = {}
    set_form_field(fields, "expires_after[anchor]", "created_at")
    set_form_field(fields, "expires_after[seconds]", "3600")
    set_form_field(fields, "purpose", "assistants")
    assert fields == {"expires_after": {"anchor": "created_at", "seconds": "3600"}, "purpose": "assistants"}


def test_validation_message_names_the_field() -> None:
    class Body(BaseModel):
        model: str
        n: int

    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"n": "x"})
    message = describe_validation_error(caught.value)
    assert "model" in message and "n:" in message
