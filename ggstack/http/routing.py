"""Bind generated operations to handlers and turn each into a Starlette endpoint.

A request goes through a fixed order: parameters, content type, body, handler, rendering.
Everything before the handler is checked against the spec, so a handler only ever sees
valid input. A handler is `handlers.<module>.<operation_id>`; an operation without one
answers 501 and is listed by `ggstack routes --missing`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import time
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pydantic import BaseModel, RootModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ggstack.core.errors import DomainError
from ggstack.http import schemas
from ggstack.http.bodies import capped_request, parse_json, read_capped, require_json
from ggstack.http.errors import (
    ApiError,
    InvalidRequest,
    NotSupported,
    PayloadTooLarge,
    UnsupportedMediaType,
    from_domain,
)
from ggstack.http.operations import Operation
from ggstack.http.render import SSE_DONE, Blob, dumps, error_body, error_response, jsonable, sse_frame

log = logging.getLogger("ggstack.http.routing")

Handler = Callable[..., Awaitable[Any] | Any]


class HandlerSignatureError(TypeError):
    """A handler does not accept the arguments its operation declares."""


def find_handler(operation: Operation) -> Handler | None:
    """`handlers.<module>.<operation_id>`, or None when either is absent.

    A handler module that exists but fails to import is an error, not a missing handler.
    """
    module_name = f"handlers.{operation.module}"
    if importlib.util.find_spec(module_name) is None:
        return None
    handler = getattr(importlib.import_module(module_name), operation.operation_id, None)
    if handler is not None:
        check_signature(operation, handler)
    return handler


def handler_arguments(operation: Operation) -> list[str]:
    names = [param_argument(p.name) for p in operation.params]
    if operation.body is not None:
        names.append("body")
        if is_multipart(operation):
            names.append("uploads")
    return [*names, "ctx"]


def check_signature(operation: Operation, handler: Handler) -> None:
    accepted = inspect.signature(handler).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    missing = [name for name in handler_arguments(operation) if name not in accepted]
    if missing:
        raise HandlerSignatureError(
            f"handler for {operation.operation_id} must accept {', '.join(missing)}")


def param_argument(name: str) -> str:
    return name.replace("-", "_").replace(".", "_")


def is_multipart(operation: Operation) -> bool:
    return (operation.body_media_type or "").startswith("multipart/")


def not_implemented(operation: Operation) -> Handler:
    async def handler(**_: Any) -> Any:
        raise NotSupported(f"{operation.operation_id} is not implemented")

    return handler


class EndpointBuilder:
    """Makes the endpoint for each operation; used as the factory the generated tables call."""

    def __init__(self, validator: Any | None = None, recorder: Any | None = None) -> None:
        self.validator = validator
        self.recorder = recorder
        self.missing: list[Operation] = []
        # Keyed by spec too: an operation two specs define has one handler but two endpoints,
        # each validating and rendering errors as its own spec says.
        self._endpoints: dict[tuple[str, str], OperationApp] = {}

    def __call__(self, operation: Operation) -> OperationApp:
        key = (operation.spec, operation.operation_id)
        if key not in self._endpoints:
            if operation.body is not None and not is_multipart(operation):
                quick_check(operation)  # decided and compiled at start, not by the first request
            handler = find_handler(operation)
            if handler is None:
                self.missing.append(operation)
                handler = not_implemented(operation)
            self._endpoints[key] = OperationApp(operation.operation_id, self._endpoint(operation, handler))
        return self._endpoints[key]

    def _endpoint(self, operation: Operation, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        is_async = inspect.iscoroutinefunction(handler) or inspect.isasyncgenfunction(handler)

        async def endpoint(request: Request) -> Response:
            started_ns = time.time_ns()
            try:
                kwargs = await read_arguments(operation, request)
                result = handler(**kwargs) if is_async else await run_in_threadpool(handler, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                response = await render(operation, result)
            except (ApiError, DomainError) as exc:
                # A domain error no handler mapped gets the default mapping (its own field name).
                error = exc if isinstance(exc, ApiError) else from_domain(exc)
                log_api_error(operation, error)
                response = error_response(error, operation.error_shape)
            except Exception:  # noqa: BLE001 - any other failure is a logged 500, never str(exc)
                response = server_error(operation.error_shape, operation.operation_id)
            if self.validator is not None:
                response = await self.validator.check(operation, request, response)
            if self.recorder is not None:
                response = self.recorder.record(operation, request, response, started_ns)
            return response

        endpoint.__name__ = operation.operation_id
        return endpoint


class OperationApp:
    """An operation's endpoint as the ASGI app its route runs.

    Given a plain `request -> response` function, Starlette wraps it per request in a Request
    of its own and a second exception-handling layer around `send`. The endpoint already turns
    every exception into its answer, so the route runs it directly: two layers fewer on every
    call, which on the cheapest routes is a measurable share of the request.
    """

    def __init__(self, name: str, respond: Callable[[Request], Awaitable[Response]]) -> None:
        self.__name__ = name  # the operationId: the route's name and its /metrics label
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive, send))
        await response(scope, receive, send)


def log_api_error(operation: Operation, exc: ApiError) -> None:
    level = logging.ERROR if exc.status >= 500 and exc.status != 501 else logging.WARNING
    log.log(level, "%s -> %d %s", operation.operation_id, exc.status, exc.message)


def server_error(shape: str, where: str) -> Response:
    """Log the traceback, answer a generic 500 naming only a request id."""
    request_id = uuid.uuid4().hex[:12]
    log.exception("unhandled error in %s (request id %s)", where, request_id)
    exc = ApiError(f"Internal server error (request id {request_id})")
    return error_response(exc, shape)


async def read_arguments(operation: Operation, request: Request) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for param in operation.params:
        raw = raw_param(request, param.location, param.name)
        if not raw:
            if param.required:
                raise InvalidRequest(f"Missing required {param.location} parameter '{param.name}'",
                                     param=param.name)
            continue
        kwargs[param_argument(param.name)] = param.parse(raw)
    ctx = request.state.ctx
    if operation.body is not None:
        if is_multipart(operation):
            # Form fields ride beside the file, so they get the JSON allowance on top.
            limit = ctx.settings.max_upload_bytes + ctx.settings.max_json_bytes
            kwargs["body"], kwargs["uploads"] = await read_form(operation, capped_request(request, limit, "The upload"))
        else:
            kwargs["body"] = await read_json(operation, request, ctx.settings.max_json_bytes)
    kwargs["ctx"] = ctx
    return kwargs


def raw_param(request: Request, location: str, name: str) -> list[str]:
    if location == "path":
        value = request.path_params.get(name)
        return [] if value is None else [str(value)]
    if location == "query":
        return request.query_params.getlist(name) or deep_object(request, name)
    if location == "header":
        return request.headers.getlist(name)
    return []


def deep_object(request: Request, name: str) -> list[str]:
    """`name[key]=value` pairs (OpenAPI's deepObject style, how llama-stack-client sends an object
    in a query) as the one JSON object the parameter's parser reads; [] when there are none."""
    prefix = name + "["
    fields = {key[len(prefix):-1]: value for key, value in request.query_params.multi_items()
              if key.startswith(prefix) and key.endswith("]")}
    return [json.dumps(fields)] if fields else []


async def read_json(operation: Operation, request: Request, limit: int) -> BaseModel | None:
    raw = await read_capped(request, limit)
    if not raw.strip():
        if operation.body_required:
            raise InvalidRequest("Request body is required (a JSON object)", param="body")
        return None
    require_json(request)
    data = parse_json(raw)
    check_against_spec(operation, data)
    return validate_body(operation, data)


def body_pointer(operation: Operation) -> str:
    assert operation.body_media_type is not None
    return schemas.request_body_pointer(operation.spec, operation.spec_path, operation.method,
                                        operation.body_media_type)


def quick_check(operation: Operation) -> Callable[[Any], bool] | None:
    return schemas.quick_check(operation.spec, body_pointer(operation))


def check_against_spec(operation: Operation, data: Any) -> None:
    """The spec's own schema decides what is valid; the model only gives it a type.

    The compiled quick check answers for the bodies it accepts (most of them); python-jsonschema
    judges the rest and words the error, so what is refused, and how, is its call alone."""
    quick = quick_check(operation)
    if quick is not None and quick(data):
        return
    problem = schemas.first_problem(schemas.validator(operation.spec, body_pointer(operation)), data)
    if problem is not None:
        message, param = schemas.describe(problem)
        raise InvalidRequest(f"Invalid request body: {message}", param=param or "body")


async def read_form(operation: Operation, request: Request) -> tuple[BaseModel, dict[str, UploadFile]]:
    media_type = request.headers.get("content-type", "")
    if not media_type.startswith("multipart/form-data"):
        raise UnsupportedMediaType(f"Content-Type must be multipart/form-data, got {media_type or 'none'}")
    try:
        form = await request.form()
    except PayloadTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - the multipart parser raises several unrelated types
        raise InvalidRequest(f"Malformed multipart body: {exc}", param="body") from None
    fields: dict[str, Any] = {}
    uploads: dict[str, UploadFile] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            uploads[key] = value
            # The bytes stay in `uploads`; the model sees a stand-in that is empty only when the
            # upload is, so a schema's `minLength: 1` on a file (Dell's image) is checked.
            set_form_field(fields, key, b"" if value.size == 0 else b"\0")
        else:
            set_form_field(fields, key, value)
    return validate_form(operation, fields), uploads


def set_form_field(fields: dict[str, Any], key: str, value: Any) -> None:
    """`a[b]=1` becomes {"a": {"b": "1"}} and `a[]=1` appends to a list, as the openai SDK encodes them;
    a plain field given twice (`a=1&a=2`, how other clients send arrays) becomes a list too."""
    head, _, rest = key.partition("[")
    if not rest:
        if key in fields and not isinstance(fields[key], dict):
            previous = fields[key]
            fields[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[key] = value
        return
    if rest == "]":
        target = fields.setdefault(head, [])
        if not isinstance(target, list):
            raise InvalidRequest(f"Form field '{head}' is given both as a value and as a list", param=head)
        target.append(value)
        return
    target = fields.setdefault(head, {})
    if not isinstance(target, dict):
        raise InvalidRequest(f"Form field '{head}' is given both as a value and as an object", param=head)
    set_form_field(target, rest.replace("]", "", 1), value)


def validate_form(operation: Operation, fields: dict[str, Any]) -> BaseModel:
    """Form values are text; a field the model wants as a number, object or null is read as JSON."""
    assert operation.body is not None
    try:
        return operation.body.model_validate(fields)
    except ValidationError as exc:
        failing = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
    retyped = dict(fields)
    for name in failing:
        if isinstance(retyped.get(name), str):
            try:
                retyped[name] = parse_json(retyped[name].encode())
            except InvalidRequest:
                if wants_list(operation.body, name):
                    retyped[name] = [retyped[name]]  # an array field sent once, without brackets
    refuse_undeclared_nulls(operation, retyped, [name for name in failing if retyped.get(name) is None])
    return validate_body(operation, retyped)


def refuse_undeclared_nulls(operation: Operation, fields: dict[str, Any], nulls: list[str]) -> None:
    """A form field read as JSON `null` stands for "left out" only where the spec allows null
    (Dell's image-variation fields do); elsewhere (a file's `expires_after`) it is a 400, as the
    same null in a JSON body would be. The model cannot tell: it takes None for any optional field."""
    if not nulls:
        return
    pointer = body_pointer(operation)
    text_only = {name: "" if isinstance(value, bytes) else value for name, value in fields.items()}
    for error in schemas.validator(operation.spec, pointer).iter_errors(text_only):
        if error.path and error.path[0] in nulls:
            raise InvalidRequest(f"Form field '{error.path[0]}' is null; leave it out or give a value",
                                 param=str(error.path[0]))


def wants_list(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    if field is None:
        return False
    kinds = typing.get_args(field.annotation) or (field.annotation,)
    return any(typing.get_origin(kind) is list for kind in kinds)


def validate_body(operation: Operation, data: Any) -> BaseModel:
    assert operation.body is not None
    try:
        return defaults_for_nulls(operation.body.model_validate(data))
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc), param=first_error_field(exc)) from None


def defaults_for_nulls(value: Any) -> Any:
    """Optional request fields accept an explicit null (codegen/requests.py); null means "not
    given", so a field that has a default gets it back and handlers read one meaning, not two."""
    if isinstance(value, BaseModel):
        for name in list(value.model_fields_set):
            current = value.__dict__.get(name)
            field = type(value).model_fields.get(name)
            if current is None and field is not None and not field.is_required():
                # Not given: the default comes back and the field leaves the set of given ones,
                # so handlers that read `exclude_unset` dumps do not see a None either.
                value.__dict__[name] = field.get_default(call_default_factory=True, validated_data={})
                value.model_fields_set.discard(name)
            else:
                defaults_for_nulls(current)
        if isinstance(value, RootModel):
            defaults_for_nulls(value.root)
    elif isinstance(value, list):
        for item in value:
            defaults_for_nulls(item)
    elif isinstance(value, dict):
        for item in value.values():
            defaults_for_nulls(item)
    return value


def first_error_field(exc: ValidationError) -> str | None:
    errors = exc.errors()
    if not errors or not errors[0]["loc"]:
        return None
    return ".".join(str(part) for part in errors[0]["loc"])


def describe_validation_error(exc: ValidationError) -> str:
    """Name the fields at fault; a union's many branch errors collapse to their shortest location."""
    seen: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"]) or "body"
        seen.setdefault(loc, error["msg"])
    shown = sorted(seen.items(), key=lambda item: (item[0].count("."), item[0]))[:3]
    parts = "; ".join(f"{loc}: {msg}" for loc, msg in shown)
    more = f" (and {len(seen) - len(shown)} more)" if len(seen) > len(shown) else ""
    return f"Invalid request body: {parts}{more}"


async def render(operation: Operation, result: Any) -> Response:
    if result is None:
        return Response(status_code=200)
    if isinstance(result, Response):
        return result
    if isinstance(result, Blob):
        return await blob_response(result)
    if isinstance(result, AsyncIterator):
        return await stream(operation, result)
    return Response(dumps(jsonable(result)), media_type="application/json")


async def blob_response(blob: Blob) -> Response:
    headers = {}
    if blob.filename:
        headers["Content-Disposition"] = f'attachment; filename="{blob.filename}"'
    if isinstance(blob.data, bytes):
        return Response(blob.data, media_type=blob.media_type, headers=headers)
    data = blob.data
    if blob.size is not None:
        headers["Content-Length"] = str(blob.size)
    # As with SSE: the first chunk is read before answering, so a missing blob is still a 404.
    try:
        first = await anext(data, b"")
    except BaseException:
        await close(data)
        raise

    async def chunks() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in data:
                yield chunk
        finally:
            await close(data)

    return StreamingResponse(chunks(), media_type=blob.media_type, headers=headers)


async def stream(operation: Operation, chunks: AsyncIterator[Any]) -> Response:
    """Pull the first chunk before answering, so an early failure still gets its real status."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await close(chunks)
        raise

    async def frames() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield sse_frame(jsonable(first))
                async for chunk in chunks:
                    yield sse_frame(jsonable(chunk))
            if operation.sse_done:
                yield SSE_DONE
        except (ApiError, DomainError) as exc:
            error = exc if isinstance(exc, ApiError) else from_domain(exc)
            log_api_error(operation, error)
            yield sse_frame({"error": error_body(error, operation.error_shape)})
        except Exception:
            request_id = uuid.uuid4().hex[:12]
            log.exception("stream of %s failed (request id %s)", operation.operation_id, request_id)
            yield sse_frame({"error": error_body(ApiError(f"Internal server error (request id {request_id})"),
                                                 operation.error_shape)})
        finally:
            await close(chunks)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def close(chunks: AsyncIterator[Any]) -> None:
    """Closing the handler's iterator is what tells the engine to stop generating."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
