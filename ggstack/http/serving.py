"""uvicorn's HTTP protocol with one socket write per answer instead of two.

uvicorn writes an answer's status line and headers as soon as the app sends
`http.response.start`, and the body with the next message: two `write` system calls per
answer. On the cheapest routes the first of them was the largest single cost of a request
(py-spy put half the event loop's samples in it: on loopback a write also runs the
receiver's side of TCP). Here every write made during one turn of the event loop is held and
handed to the socket as one at the end of the turn, so a complete answer (headers and body,
sent back to back) is one write, and a stream's chunks still leave the turn they are sent in.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # httptools: uvicorn[standard]


def http_protocol() -> type[asyncio.Protocol]:
    """What `ggstack serve` gives uvicorn as its HTTP protocol."""
    return CoalescingHttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes within one loop turn reach the real one as a single write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Hand what is held to the socket (the end of the turn, or before closing)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
