"""The errors handlers and backends raise; one place (ggstack.http.routing) renders them.

Each class carries its HTTP status and a short title. The message names the problem and,
when a request field is at fault, `param` names that field. Backends translate their own
exceptions into these where they meet the handlers, never by matching message text.
"""

from __future__ import annotations


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

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class NotSupported(ApiError):
    """The operation or option exists in the spec but ggstack does not implement it (501)."""

    status = 501
    title = "Not Implemented"
    type = "not_implemented_error"
