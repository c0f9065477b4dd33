"""ggstack's uvicorn protocol: an answer's writes within one loop turn reach the socket as one."""

from __future__ import annotations

import asyncio
import socket

from ggstack.http.serving import CoalescingTransport


async def read_all(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), timeout=10)


class Recording(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


def test_writes_of_one_turn_are_one_write_and_order_and_close_are_kept() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(Recording, ours)
        writes: list[bytes] = []
        real_write = transport.write
        transport.write = lambda data: (writes.append(bytes(data)), real_write(data))  # type: ignore[method-assign]
        reader, peer = await asyncio.open_connection(sock=theirs)
        coalescing = CoalescingTransport(transport, loop)  # type: ignore[arg-type]

        coalescing.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        coalescing.write(b"{}")
        assert writes == []  # held until the turn ends
        await asyncio.sleep(0)
        assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]

        coalescing.write(b"data: 1\n\n")  # a stream's chunks leave the turn they are sent in
        await asyncio.sleep(0)
        coalescing.write(b"data: 2\n\n")
        coalescing.close()  # what is held goes out before the connection closes
        assert writes[1:] == [b"data: 1\n\n", b"data: 2\n\n"]
        sent = b"".join(writes)
        assert await read_all(reader, len(sent)) == sent
        assert await reader.read() == b""  # closed
        peer.close()

    asyncio.run(scenario())
