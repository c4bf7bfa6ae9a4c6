"""Reference C, the process floor: the simplest daemon that does noded's job.

``python -m tests.bench.process_floor PORT``: aiohttp on uvloop; ``PUT /StartFunction``
runs ``echo`` in a process of its own, taken from a few children a minimal fork server
keeps forked ahead, over newline-framed pipes, and answers the call state.  No journal,
no validation, no metrics, no output capture, no limits: what a process per call costs
with nothing of noded's on top (issue 21).
"""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import subprocess
import sys

import orjson
import uvloop
from aiohttp import web

from tests.bench.floor import serve_app

SPARES = 4


class Spares:
    """Children forked ahead: (write end, read end) of each one's pipes."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._ready: collections.deque[tuple[int, int]] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[tuple[int, int]]] = collections.deque()
        asyncio.get_running_loop().add_reader(control.fileno(), self._on_child)
        self._ask(SPARES)

    def _ask(self, count: int) -> None:
        self._control.send(b"f" * count)

    def _on_child(self) -> None:
        _, fds, _, _ = socket.recv_fds(self._control, 1, 2)
        pair = (fds[0], fds[1])
        if self._waiting:
            self._waiting.popleft().set_result(pair)
        else:
            self._ready.append(pair)

    async def take(self) -> tuple[int, int]:
        self._ask(1)  # its replacement
        if self._ready:
            return self._ready.popleft()
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return await waiter


SPARES_KEY = web.AppKey("spares", Spares)


async def start_function(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    to_child, from_child = await request.app[SPARES_KEY].take()
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes] = loop.create_future()

    def readable() -> None:
        if not answered.done():
            answered.set_result(os.read(from_child, 65536))

    loop.add_reader(from_child, readable)
    try:
        os.write(to_child, orjson.dumps(body) + b"\n")
        os.close(to_child)
        line = await asyncio.wait_for(answered, 30)
    finally:
        loop.remove_reader(from_child)
        os.close(from_child)
    frame = orjson.loads(line)
    state = {"fnc_id": "1:2:1763800000.123456:0123456789abcdef", "finished": True,
             "result": frame["result"], "error": None}  # fmt: skip
    return web.Response(body=orjson.dumps(state), content_type="application/json")


async def serve(port: int, control: socket.socket) -> None:
    app = web.Application()
    app[SPARES_KEY] = Spares(control)
    app.router.add_put("/StartFunction", start_function)
    await serve_app(app, port)


def start_fork_server() -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """The fork server, a lean interpreter of its own (as noded's zygote is: forking a
    process that imported aiohttp would copy its page tables at every fork)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "tests.bench.floor_zygote", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
    )
    theirs.close()
    return ours, proc


if __name__ == "__main__":
    control, zygote = start_fork_server()
    try:
        uvloop.run(serve(int(sys.argv[1]), control))
    finally:
        zygote.terminate()
