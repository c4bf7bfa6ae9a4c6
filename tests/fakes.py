"""Bad nodes made of real sockets: silent, garbage-speaking, or hanging up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def fake_node(behaviour: Behaviour) -> AsyncIterator[int]:
    """A loopback server that treats each connection with ``behaviour``; yields its port."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await behaviour(reader, writer)
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.wait_for(server.wait_closed(), 5)


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    await asyncio.sleep(3600)


async def speaks_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\nthis is not http\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.5)


async def answers_html(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    body = b"<html>proxy error</html>"
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)


async def read_http_message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 message with a Content-Length body; b"" at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + (await reader.readexactly(length) if length else b"")


class LossyProxy:
    """Forwards HTTP requests to a node, but hangs up instead of passing on the answers
    to the first ``drops`` requests of ``procedure`` (which the node did carry out)."""

    def __init__(self, target_port: int, procedure: str, drops: int = 1) -> None:
        self.target_port = target_port
        self.procedure = procedure.encode()
        self.drops_left = drops
        self.dropped = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while request := await read_http_message(reader):
            answer = await self._forward(request)
            if request.split(b" ", 2)[1] == b"/" + self.procedure and self.drops_left > 0:
                self.drops_left -= 1
                self.dropped += 1
                return  # the connection closes without the answer
            writer.write(answer)
            await writer.drain()

    async def _forward(self, request: bytes) -> bytes:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            up_writer.write(request)
            await up_writer.drain()
            return await asyncio.wait_for(read_http_message(up_reader), 60)
        finally:
            up_writer.close()
