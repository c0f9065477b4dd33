"""Domain errors: what engines, stores and services raise, in their own words.

They carry no HTTP status and name no request field: an engine knows that a prompt overflows
the context window, not whether the caller sent it as `messages` or `prompt`. Handlers catch
them where they know the request's shape and turn them into `ggstack.http.errors.ApiError`s
(`ggstack.http.errors.from_domain` does the default mapping in one place).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a lower layer raises on purpose."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A machine-readable reason in the domain's words (e.g. "unsupported_file"), or None.
        self.code = code


# ---- lookups -----------------------------------------------------------------------------------

class NotFoundError(DomainError):
    """A named model, file, store or record does not exist (the reference answers 404)."""

    def __init__(self, message: str, *, kind: str = "", identifier: str = "", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.kind = kind
        self.identifier = identifier


class AlreadyExistsError(DomainError):
    """Creating something whose id is taken, or a state that forbids the change (409)."""


# ---- values ------------------------------------------------------------------------------------

class InvalidValueError(DomainError):
    """A value is well formed but unusable here (a model of the wrong kind, a bad option)."""

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        # `field` is the domain's own name (e.g. "context_length"), not a request parameter.
        self.field = field


class UnknownIdError(InvalidValueError):
    """An id that depends on server state is unknown (the reference answers 400 'Invalid value: ...').

    The message says what is unknown ("Vector store 'vs_1' not found"); the HTTP mapping adds
    the reference server's "Invalid value: " in front.
    """


class ContextOverflowError(InvalidValueError):
    """The prompt (plus the asked-for completion) does not fit the model's context window."""

    def __init__(self, message: str, *, tokens: int = 0, limit: int = 0) -> None:
        super().__init__(message, field="prompt", code="context_length_exceeded")
        self.tokens = tokens
        self.limit = limit


class GrammarError(InvalidValueError):
    """A JSON schema or grammar the engine cannot turn into constrained decoding."""


class TooLargeError(DomainError):
    """Input over a configured limit (413)."""


# ---- capacity and capability -------------------------------------------------------------------

class BusyError(DomainError):
    """A bounded queue is full; retrying later may succeed (429)."""

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnavailableError(DomainError):
    """A dependency (database, Chroma, a remote provider) cannot be reached (503)."""


class TimedOutError(DomainError):
    """A dependency (a remote inference provider) did not answer in time (504)."""


class UnsupportedError(DomainError):
    """The request is valid but this server or engine cannot do it (501)."""
