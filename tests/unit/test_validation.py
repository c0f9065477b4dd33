"""Response validation: a body the spec does not allow becomes a loud 500; a good one passes untouched."""

from __future__ import annotations

import json

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse

from generated.routes import llama_stack_deprecated as llama_routes
from generated.routes import llama_stack_stable as stable_routes
from ggstack.http.validation import ResponseValidator


def request_for(path: str, path_params: dict | None = None) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b"",
                    "path_params": path_params or {}})


def check(operation, response, path_params=None):
    validator = ResponseValidator()
    return anyio.run(validator.check, operation, request_for(operation.paths[0], path_params), response)


def test_a_conforming_body_passes_unchanged() -> None:
    response = JSONResponse({"status": "OK"})
    assert check(stable_routes.HEALTH, response) is response


def test_a_body_with_the_wrong_type_becomes_a_500_naming_the_problem() -> None:
    answer = check(stable_routes.HEALTH, JSONResponse({"status": 5}))
    assert answer.status_code == 500
    assert b"does not allow" in answer.body and b"health" in answer.body


def test_an_error_body_with_extra_keys_is_caught() -> None:
    bad = JSONResponse({"status": 404, "title": "Not Found", "detail": "x", "error": "extra"}, status_code=404)
    answer = check(llama_routes.OPENAI_RETRIEVE_FILE, bad, {"file_id": "file-1"})
    assert answer.status_code == 500


def test_a_missing_required_field_is_caught() -> None:
    answer = check(llama_routes.OPENAI_RETRIEVE_FILE, JSONResponse({"id": "file-1"}), {"file_id": "file-1"})
    assert answer.status_code == 500


def test_stream_events_are_checked_against_the_event_stream_schema() -> None:
    from ggstack.http.validation import event_problem

    validator = ResponseValidator().event_validator(llama_routes.OPENAI_CHAT_COMPLETION)
    assert validator is not None
    good = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]}
    assert event_problem(validator, b"data: " + json.dumps(good).encode() + b"\n\n") is None
    assert event_problem(validator, b"data: [DONE]\n\n") is None
    bad = {**good, "object": "chat.completion"}
    assert "object" in event_problem(validator, b"data: " + json.dumps(bad).encode() + b"\n\n")
