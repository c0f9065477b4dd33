"""Reading request bodies within their limits, and JSON that every later read can write back.

Limits are enforced while the bytes arrive: a declared Content-Length over the limit is
refused before reading, and a body that streams past it is cut off at the limit, so neither
memory nor disk ever holds more than the limit (plus one network chunk).
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive

from ggstack.http.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

JSON_MEDIA_TYPES = ("application/json", "text/json")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_json(request: Request) -> None:
    """A JSON body must say so: `text/plain` and form types are what cross-site forms can send
    without a CORS preflight, so accepting them would let any web page drive the server."""
    kind = media_type(request)
    if kind not in JSON_MEDIA_TYPES and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, got {kind or 'none'}")


def too_large(limit: int, what: str) -> PayloadTooLarge:
    # `Connection: close` makes the server drop the rest of the body instead of reading it
    # to keep the connection alive.
    return PayloadTooLarge(f"{what} is larger than the limit of {limit} bytes", headers={"Connection": "close"})


def check_declared_length(request: Request, limit: int, what: str) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit, what)


async def read_capped(request: Request, limit: int, what: str = "The request body") -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `limit` bytes."""
    check_declared_length(request, limit, what)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit, what)
        parts.append(chunk)
    return b"".join(parts)


def capped_request(request: Request, limit: int, what: str) -> Request:
    """The same request with a receive channel that stops at `limit` bytes, for parsers
    (multipart) that would otherwise spool everything before anyone can look at the size."""
    check_declared_length(request, limit, what)
    receive: Receive = request.receive
    seen = 0

    async def counting_receive() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit, what)
        return message

    return Request(request.scope, counting_receive)


def refuse_constant(name: str) -> Any:
    raise InvalidRequest(f"Request body is not valid JSON: {name} is not a JSON number", param="body")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e999 parses to infinity, which no later JSON answer could carry.
        raise InvalidRequest(f"Request body has a number out of range: {text}", param="body")
    return value


def parse_json(raw: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers that overflow to infinity are a 400 here, because
    once stored they would make every later answer that includes them fail to serialise."""
    try:
        return json.loads(raw, parse_constant=refuse_constant, parse_float=finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", param="body") from None
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply", param="body") from None
