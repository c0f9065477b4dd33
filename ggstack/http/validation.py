"""Opt-in response validation (`ggstack serve --validate-responses`) with openapi-core.

Every answer is checked against the overlaid spec of the operation that produced it; a
mismatch is logged as an error and replaces the answer with a 500 naming the problem, so
a test (or a user's own contract run) cannot miss it. Stream events are checked one by one
against the operation's `text/event-stream` schema; a bad event becomes an error event.
The check runs in a worker thread because it costs milliseconds on large specs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
from jsonschema import Draft202012Validator
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ggstack.http import schemas
from ggstack.http.docs import spec_document
from ggstack.http.errors import ApiError
from ggstack.http.operations import Operation
from ggstack.http.render import error_body, error_response, sse_frame

log = logging.getLogger("ggstack.http.validation")


class ResponseMismatch(ApiError):
    """The server produced an answer its own spec does not allow."""

    status = 500
    title = "Response does not match the spec"
    type = "server_error"


@dataclass
class SpecRequest:
    """What openapi-core needs to find the operation: the spec's own server and path pattern."""

    host_url: str
    path: str
    path_pattern: str
    method: str
    parameters: RequestParameters = field(default_factory=RequestParameters)
    content_type: str = "application/json"
    body: bytes | None = None


@dataclass
class SpecResponse:
    status_code: int
    content_type: str
    headers: dict[str, str]
    data: bytes | None


class ResponseValidator:
    def __init__(self) -> None:
        self._apis: dict[str, OpenAPI] = {}

    def api(self, spec: str) -> OpenAPI:
        if spec not in self._apis:
            # codegen validated every overlaid document (codegen/validate.py); skip openapi-core's slow re-validation.
            self._apis[spec] = OpenAPI.from_dict(spec_document(spec), config=Config(spec_validator_cls=None))  # type: ignore[arg-type]  # None skips it (openapi-core's annotation omits None)
        return self._apis[spec]

    async def check(self, operation: Operation, request: Request, response: Response) -> Response:
        if isinstance(response, StreamingResponse):
            if response.media_type == "text/event-stream":
                response.body_iterator = self._checked_events(operation, response.body_iterator)
            return response
        problem = await anyio.to_thread.run_sync(self.problem, operation, request, response)
        if problem is None:
            return response
        log.error("RESPONSE DOES NOT MATCH SPEC: %s %s -> %d: %s", operation.method, operation.operation_id,
                  response.status_code, problem)
        return error_response(ResponseMismatch(f"{operation.operation_id} answered {response.status_code} "
                                               f"with a body its spec does not allow: {problem}"),
                              operation.error_shape)

    def problem(self, operation: Operation, request: Request, response: Response) -> str | None:
        document = spec_document(operation.spec)
        server = urlsplit(document.get("servers", [{"url": "http://localhost"}])[0]["url"])
        base = server.path.rstrip("/")
        path = operation.spec_path
        for name, value in request.path_params.items():
            path = path.replace("{" + name + "}", str(value))
        spec_request = SpecRequest(host_url=f"{server.scheme}://{server.netloc}", path=base + path,
                                   path_pattern=base + operation.spec_path, method=operation.method.lower(),
                                   parameters=RequestParameters(path=dict(request.path_params)))
        headers = Headers(raw=response.raw_headers)
        spec_response = SpecResponse(status_code=response.status_code,
                                     content_type=headers.get("content-type", ""),
                                     headers=dict(headers), data=bytes(response.body) or None)
        try:
            self.api(operation.spec).validate_response(spec_request, spec_response)
        except Exception as exc:  # noqa: BLE001 - openapi-core raises a family of unrelated error types
            return describe(exc)
        return None

    def event_validator(self, operation: Operation) -> Draft202012Validator | None:
        """The `text/event-stream` schema of the operation's success answer, if it declares one."""
        document = spec_document(operation.spec)
        responses = document["paths"][operation.spec_path][operation.method.lower()]["responses"]
        for status in ("200", "201"):
            if "text/event-stream" in responses.get(status, {}).get("content", {}):
                pointer = schemas.operation_pointer(operation.spec_path, operation.method, "responses", status,
                                                    "content", "text/event-stream", "schema")
                return schemas.validator(operation.spec, pointer)
        return None

    async def _checked_events(self, operation: Operation, frames: AsyncIterable[Any]) -> AsyncIterator[bytes]:
        validator = self.event_validator(operation)
        async for frame in frames:
            raw = frame if isinstance(frame, bytes) else str(frame).encode()
            problem = None if validator is None else event_problem(validator, raw)
            if problem is None:
                yield raw
                continue
            log.error("STREAM EVENT DOES NOT MATCH SPEC: %s: %s", operation.operation_id, problem)
            yield sse_frame({"error": error_body(ResponseMismatch(f"stream event does not match the spec: {problem}"),
                                                 operation.error_shape)})


def event_problem(validator: Draft202012Validator, frame: bytes) -> str | None:
    text = frame.decode("utf-8").strip()
    if not text.startswith("data: ") or text == "data: [DONE]":
        return None
    try:
        event = json.loads(text[len("data: "):])
    except ValueError as exc:
        return f"event is not JSON: {exc}"
    if isinstance(event, dict) and set(event) == {"error"}:
        return None
    error = next(iter(sorted(validator.iter_errors(event), key=lambda e: e.path)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {where}: {error.message[:300]}"


def describe(exc: Exception) -> str:
    """openapi-core nests the jsonschema errors; surface the first concrete one."""
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            first = schema_errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(root)"
            parts.append(f"at {where}: {first.message[:300]}")
            break
        parts.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return "; ".join(parts)[:1000]
