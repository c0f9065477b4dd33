"""One remote provider: a pooled HTTP client, a bound on requests in flight, safe retries, and
the one place where its failures become domain errors (as httpx's `map_exceptions` does).

Failures map as a client of ggstack would want them read: a remote that cannot be reached is
`UnavailableError` (503) naming the provider; one that stops answering mid-way is
`TimedOutError` (504); its 429 stays a `BusyError` (429) with its Retry-After; a 400 it gives is
the caller's `InvalidValueError` with the remote's own message.

A request is retried only when nothing of its answer has been read: the connection failed,
the pooled connection turned out dead, or the remote answered 502/503 (still starting, or a
load balancer with no backend). Once a byte of an answer has arrived, a failure is reported,
never retried, so no client ever sees half an answer twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ggstack.core.config import RemoteProviderConfig
from ggstack.core.errors import (
    BusyError,
    ContextOverflowError,
    DomainError,
    InvalidValueError,
    NotFoundError,
    TimedOutError,
    UnavailableError,
    UnsupportedError,
)
from ggstack.engines.remote.flavours import FLAVOURS, Flavour

log = logging.getLogger("ggstack.engines.remote")

#: Waits between retries (seconds); their number is the provider's `retries`, at most this many.
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)
#: Statuses that say the remote did not start on the request (safe to send again).
RETRY_STATUSES = frozenset({502, 503})
HEALTH_TIMEOUT_S = 5.0


class RemoteProvider:
    """A remote OpenAI-compatible server. Created and closed in the app's lifespan."""

    def __init__(self, config: RemoteProviderConfig) -> None:
        self.config = config
        self.provider_id = config.provider_id
        self.flavour: Flavour = FLAVOURS[config.provider_type]
        self.base_url = config.base_url.rstrip("/")
        # llama-server's /tokenize, Ollama's /api/* and vLLM's /tokenize sit beside /v1, not under it
        self.root_url = self.base_url.removesuffix("/v1")
        headers = {}
        if config.api_key is not None and config.api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=config.max_concurrency,
                                max_keepalive_connections=config.max_concurrency))
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._waiting = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- requests ------------------------------------------------------------------------------

    async def post_json(self, path: str, body: dict[str, Any], *, root: bool = False,
                        model: str | None = None) -> Any:
        """POST and read a whole JSON answer."""
        async with self._slot():
            response = await self._open("POST", self._url(path, root), body, model=model)
            try:
                data = await response.aread()
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            finally:
                await response.aclose()
        return _json(data, self.provider_id)

    async def get_json(self, path: str, *, root: bool = False, timeout: float | None = None) -> Any:
        """GET a JSON document (model lists); not counted against max_concurrency."""
        try:
            response = await self._client.get(self._url(path, root),
                                              timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.headers, response.content)
        return _json(response.content, self.provider_id)

    async def stream(self, path: str, body: dict[str, Any], *, model: str | None = None
                     ) -> AsyncIterator[dict[str, Any]]:
        """POST with `stream: true` and yield each server-sent event's JSON as it arrives.

        The slot is held until the stream ends or is closed; closing it closes the remote
        connection, which is how the remote learns that our client went away.
        """
        async with self._slot():
            response = await self._open("POST", self._url(path, False), body, model=model)
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    item = _json(data.encode(), self.provider_id)
                    if isinstance(item, dict) and "error" in item:
                        raise self._stream_error(item["error"])
                    yield item
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, streaming=True) from None
            finally:
                await response.aclose()

    async def problems(self) -> list[str]:
        """[] when the remote lists its models within a few seconds, else one line naming it."""
        try:
            await self.get_json("/models", root=False, timeout=HEALTH_TIMEOUT_S)
        except DomainError as exc:
            return [exc.message]
        return []

    # -- internals -----------------------------------------------------------------------------

    def _url(self, path: str, root: bool) -> str:
        return (self.root_url if root else self.base_url) + path

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked() and self._waiting >= self.config.max_queue:
            raise BusyError(f"inference provider '{self.provider_id}' has {self.config.max_concurrency} requests "
                            f"in flight and {self._waiting} waiting; try again later", retry_after=1)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def _open(self, method: str, url: str, body: dict[str, Any], *, model: str | None) -> httpx.Response:
        """Send and return the response with its status checked and its body unread."""
        attempts = self.config.retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self._client.send(self._client.build_request(method, url, json=body), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                # nothing of an answer was read: connecting failed, or a pooled connection was dead
                if last:
                    raise self._transport_error(exc) from None
                log.info("inference provider %s: %s, retrying", self.provider_id, type(exc).__name__)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            else:
                if response.status_code < 400:
                    return response
                content = await _read_quietly(response)
                if response.status_code not in RETRY_STATUSES or last:
                    raise self._status_error(response.status_code, response.headers, content, model=model)
                log.info("inference provider %s answered %d, retrying", self.provider_id, response.status_code)
            await asyncio.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        raise AssertionError("unreachable")

    def _transport_error(self, exc: httpx.HTTPError, *, streaming: bool = False) -> DomainError:
        name = f"inference provider '{self.provider_id}'"
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return TimedOutError(f"{name} did not answer within {self.config.timeout_seconds:g} s",
                                 code="provider_timeout")
        if streaming:
            return UnavailableError(f"{name} closed the connection in the middle of its answer",
                                    code="provider_unavailable")
        return UnavailableError(f"{name} is unreachable at {self.base_url} ({type(exc).__name__})",
                                code="provider_unavailable")

    def _status_error(self, status: int, headers: httpx.Headers, content: bytes, *,
                      model: str | None = None) -> DomainError:
        name = f"inference provider '{self.provider_id}'"
        message, code = _remote_message(content)
        if status == 429:
            return BusyError(f"{name} is overloaded: {message}", retry_after=_retry_after(headers))
        if code == "context_length_exceeded":
            return ContextOverflowError(message)
        if status in (400, 413, 422):
            return InvalidValueError(f"{name} refused the request: {message}")
        if status == 404:
            return NotFoundError(f"Model '{model}' not found at {name}" if model else f"{name}: {message}")
        if status in (401, 403):
            return UnavailableError(f"{name} refused ggstack's credentials ({status})", code="provider_unavailable")
        if status == 501:
            return UnsupportedError(f"{name} does not support this: {message}")
        if status == 504:
            return TimedOutError(f"{name} timed out: {message}", code="provider_timeout")
        return UnavailableError(f"{name} failed with status {status}: {message}", code="provider_unavailable")

    def _stream_error(self, error: Any) -> DomainError:
        """An error event inside a stream (ggstack and vLLM send one when generation fails after the start)."""
        message = error.get("message") if isinstance(error, dict) else None
        if not message and isinstance(error, dict):
            message = error.get("detail")
        return UnavailableError(f"inference provider '{self.provider_id}' failed during its answer: "
                                f"{message or error}", code="provider_unavailable")


async def _read_quietly(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.HTTPError:
        return b""
    finally:
        await response.aclose()


def _json(data: bytes, provider_id: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise UnavailableError(f"inference provider '{provider_id}' answered with something that is not JSON",
                               code="provider_unavailable") from None


def _remote_message(content: bytes) -> tuple[str, str | None]:
    """The remote's error message and code, from the shapes OpenAI, Llama Stack and vLLM use."""
    try:
        body = json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace").strip()[:300] or "no message", None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error), error.get("code")
        detail = body.get("detail") or body.get("message") or error
        if detail:
            return str(detail)[:300], body.get("code") if isinstance(body.get("code"), str) else None
    return str(body)[:300], None


def _retry_after(headers: httpx.Headers) -> int:
    try:
        return max(1, int(float(headers.get("retry-after", "1"))))
    except ValueError:
        return 1


@contextlib.asynccontextmanager
async def open_providers(configs: list[RemoteProviderConfig]) -> AsyncIterator[dict[str, RemoteProvider]]:
    """The configured providers by id, their connection pools closed on exit."""
    providers: dict[str, RemoteProvider] = {}
    try:
        for config in configs:
            providers[config.provider_id] = RemoteProvider(config)
        yield providers
    finally:
        for provider in providers.values():
            await provider.aclose()
