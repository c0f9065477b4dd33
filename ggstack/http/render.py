"""How results and errors become HTTP bodies: JSON, SSE frames, blobs, and each family's error shape."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from time import monotonic
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python
from starlette.responses import Response

from ggstack.http.errors import ApiError

log = logging.getLogger("ggstack.http.render")

# Dell's paths sit beside Llama Stack's under /v1; these prefixes are Dell's alone.
DELL_PREFIXES = ("/v1/openai/models", "/v1/openai/audio", "/v1/openai/chat", "/v1/openai/embeddings",
                 "/v1/openai/images", "/v1/llamastack/", "/v1/performance")


@dataclass(frozen=True)
class Blob:
    """A handler result that is raw bytes (file content), not JSON.

    `data` may be an async iterator of chunks, so a large file is sent without ever being
    held in memory whole; `size` (when known) becomes the Content-Length.
    """

    data: bytes | AsyncIterator[bytes]
    media_type: str = "application/octet-stream"
    filename: str | None = None
    size: int | None = None


def jsonable(result: Any) -> Any:
    """Models drop unset optional fields (the specs rarely allow null); dicts pass as written."""
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return to_jsonable_python(result, by_alias=True, exclude_none=True)


#: Built once: `json.dumps` with any option builds a new encoder per call, a measurable
#: share of a cheap request.
ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
#: What pydantic-core writes for the non-finite floats `dumps` must refuse.
NON_FINITE = (b"NaN", b"Infinity")


def dumps(data: Any) -> bytes:
    """Compact JSON of `data` (JSON's own types, as `jsonable` gives); NaN and infinity are
    refused, as in Starlette's JSONResponse.

    pydantic-core's encoder writes it: on floats it is ~9x faster than `json`'s (an embedding
    of 384: 170 -> 19 us of the event loop), and writes each number with the same shortest
    digits, only in another form for a few (1e-05 as 0.00001). It writes NaN and infinity as bare
    tokens, so a document holding either word (in a string too) goes to `json`'s encoder, which
    refuses a real one; so does what pydantic-core cannot write. A lone surrogate (JSON's
    `\\udbc6` escape parses into one, and an answer or error may echo it) has no UTF-8 form; such
    a document is written with every non-ASCII character escaped, which is the same JSON.
    """
    try:
        text = to_json(data, inf_nan_mode="constants", serialize_unknown=False)
    except PydanticSerializationError:
        text = NON_FINITE[0]
    if NON_FINITE[0] not in text and NON_FINITE[1] not in text:
        return text
    try:
        return ENCODER.encode(data).encode("utf-8")
    except UnicodeEncodeError:
        return ASCII_ENCODER.encode(data).encode("ascii")


class RenderedAnswer:
    """A JSON answer kept rendered for as long as what it is built from stays the same.

    The model lists are what every client and dashboard polls, and building one (a pydantic
    model per model, dumped, then encoded) was most of what such a request cost. They change
    only when their key does (the registry's version, files' times), so the body is rendered
    once per key; each request still gets its own `Response`.

    Part of a key may be dear to find out (a model file's time is a system call per model):
    `also` gives that part, and is asked at most once per `also_every` seconds while the
    cheap `key` stays the same, so the answer follows it that much later.
    """

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._also: Hashable | None = None
        self._also_at = -math.inf
        self._body = b""

    def response(self, key: Hashable, build: Callable[[], Any], *, also: Callable[[], Hashable] | None = None,
                 also_every: float = 0.0) -> Response:
        """The answer for `key` (and `also()`): `build()` rendered as `render` would, built again
        only when either changes."""
        if also is not None and (key != self._key or monotonic() - self._also_at >= also_every):
            current = also()
            self._also_at = monotonic()
            if current != self._also:
                self._also, self._key = current, None
        if self._key is None or key != self._key:
            self._body = dumps(jsonable(build()))
            self._key = key
        return Response(self._body, media_type="application/json")


def sse_frame(data: Any) -> bytes:
    return b"data: " + dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def error_shape_for_path(path: str) -> str:
    """For answers no operation produced (404, 405): pick the family by path."""
    return "dell" if path.startswith(DELL_PREFIXES) else "llama_stack"


def error_body(exc: ApiError, shape: str) -> dict[str, Any]:
    """The error object each spec declares, and nothing else."""
    if shape == "dell":
        body: dict[str, Any] = {"message": exc.message, "type": exc.type}
        if exc.param is not None:
            body["param"] = exc.param
        body["code"] = exc.code if exc.code is not None else str(exc.status)
        return body
    detail = exc.message if exc.param is None or exc.param in exc.message else f"{exc.message} (param: {exc.param})"
    return {"status": exc.status, "title": exc.title, "detail": detail}


def error_response(exc: ApiError, shape: str) -> Response:
    return Response(dumps(error_body(exc, shape)), status_code=exc.status, headers=exc.headers,
                    media_type="application/json")
