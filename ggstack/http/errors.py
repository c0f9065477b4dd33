"""HTTP errors: what handlers raise, and the one mapping from the domain's errors to them.

Each class carries its HTTP status and a short title. The message names the problem and,
when a request field is at fault, `param` names that field. Lower layers raise
`ggstack.core.errors` types instead (they know no statuses and no request fields);
`from_domain` turns those into these, and ggstack.http.routing renders both.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import aclosing, contextmanager
from typing import TypeVar

from ggstack.core import errors as domain

T = TypeVar("T")


class ApiError(Exception):
    """Base of every error that becomes a 4xx/5xx answer."""

    status = 500
    title = "Internal Server Error"
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


class InvalidRequest(ApiError):
    """The request is malformed or asks for something impossible (400)."""

    status = 400
    title = "Bad Request"
    type = "invalid_request_error"


class Unauthorized(ApiError):
    """API keys are configured and the request has no valid one (401)."""

    status = 401
    title = "Unauthorized"
    type = "authentication_error"

    def __init__(self, message: str, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(ApiError):
    """The request's Host or Origin is not allowed, or its key may not do this (403)."""

    status = 403
    title = "Forbidden"
    type = "permission_error"


class NotFound(ApiError):
    """A model, file or other resource named by the request does not exist (404)."""

    status = 404
    title = "Not Found"
    type = "not_found_error"


class MethodNotAllowed(ApiError):
    """The path exists but not with this method (405)."""

    status = 405
    title = "Method Not Allowed"
    type = "invalid_request_error"


class Conflict(ApiError):
    """The resource exists already or is in a state that forbids this (409)."""

    status = 409
    title = "Conflict"
    type = "conflict_error"


class PayloadTooLarge(ApiError):
    """An upload or body is over a configured limit (413)."""

    status = 413
    title = "Payload Too Large"
    type = "invalid_request_error"


class UnsupportedMediaType(ApiError):
    """The body's content type is not one the operation accepts (415)."""

    status = 415
    title = "Unsupported Media Type"
    type = "invalid_request_error"


class Overloaded(ApiError):
    """A model's bounded queue is full; the client should retry later (429)."""

    status = 429
    title = "Too Many Requests"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: int = 1, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.headers.setdefault("Retry-After", str(retry_after))


class NotSupported(ApiError):
    """The operation or option exists in the spec but ggstack does not implement it (501)."""

    status = 501
    title = "Not Implemented"
    type = "not_implemented_error"


class Unavailable(ApiError):
    """A dependency the operation needs (database, Chroma) cannot be reached (503)."""

    status = 503
    title = "Service Unavailable"
    type = "server_error"


class GatewayTimeout(ApiError):
    """A remote the operation forwards to did not answer in time (504)."""

    status = 504
    title = "Gateway Timeout"
    type = "server_error"


#: Where this request names what a domain error is about: keyed by the error's type (the most
#: specific match wins) or by the domain's own field name (`InvalidValueError.field`).
Fields = Mapping[type[domain.DomainError] | str, str]


def from_domain(exc: domain.DomainError, fields: Fields | None = None) -> ApiError:
    """The HTTP error for a domain error: its status here, its field named as this request names it.

    Without a match in `fields`, an InvalidValueError names its own `field` (engines and stores
    use the request's words where they are the domain's too, e.g. `limit`).
    """
    param = _field_for(exc, fields or {})
    code = exc.code
    if isinstance(exc, domain.NotFoundError):
        return NotFound(exc.message, param=param, code=code)
    if isinstance(exc, domain.UnknownIdError):
        # The reference server's words for a well-formed id that names nothing here.
        return InvalidRequest(f"Invalid value: {exc.message}", param=param, code=code)
    if isinstance(exc, domain.InvalidValueError):
        return InvalidRequest(exc.message, param=param, code=code)
    if isinstance(exc, domain.AlreadyExistsError):
        return Conflict(exc.message, param=param, code=code)
    if isinstance(exc, domain.TooLargeError):
        return PayloadTooLarge(exc.message, param=param, code=code)
    if isinstance(exc, domain.BusyError):
        return Overloaded(exc.message, retry_after=exc.retry_after, param=param, code=code)
    if isinstance(exc, domain.UnavailableError):
        return Unavailable(exc.message, param=param, code=code)
    if isinstance(exc, domain.TimedOutError):
        return GatewayTimeout(exc.message, param=param, code=code)
    if isinstance(exc, domain.UnsupportedError):
        return NotSupported(exc.message, param=param, code=code)
    return ApiError(exc.message, param=param, code=code)


def _field_for(exc: domain.DomainError, fields: Fields) -> str | None:
    for kind in type(exc).__mro__:
        if kind in fields:
            return fields[kind]
    field = exc.field if isinstance(exc, domain.InvalidValueError) else None
    return fields.get(field, field) if field is not None else None


@contextmanager
def naming(fields: Fields) -> Iterator[None]:
    """Map a domain error raised inside the block with this request's field names."""
    try:
        yield
    except domain.DomainError as exc:
        raise from_domain(exc, fields) from exc


async def naming_stream(events: AsyncGenerator[T, None], fields: Fields) -> AsyncGenerator[T, None]:
    """`events`, with a domain error raised while iterating mapped with this request's field names.

    A stream's errors arise after the handler has returned, so the handler cannot catch
    them itself; this carries its field names to where they happen.
    """
    async with aclosing(events):
        try:
            async for event in events:
                yield event
        except domain.DomainError as exc:
            raise from_domain(exc, fields) from exc
