"""The references without function processes: aiohttp on uvloop.

``python -m tests.bench.floor PORT`` answers:

- ``PUT /StartFunction``: reference B, the HTTP floor.  It decodes the request, as noded
  does, and answers a fixed call state, with no process.
- ``PUT /Stamp`` ``{"delay": s}``: the wake-up floor.  A helper process started once
  sleeps ``delay`` and writes the time to a pipe the server waits on, and the server
  answers it: one process-to-server and one server-to-client wake-up, as in noded's
  wake-up measurement, and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import orjson
import uvloop
from aiohttp import web

ANSWER = orjson.dumps(
    {
        "fnc_id": "1:2:1763800000.123456:0123456789abcdef",
        "finished": True,
        "result": "x",
        "error": None,
    }
)


async def start_function(request: web.Request) -> web.Response:
    orjson.loads(await request.read())  # decode the request, as noded does
    return web.Response(body=ANSWER, content_type="application/json")


class Helper:
    """A process that sleeps when asked and then writes the time, one request at a time."""

    def __init__(self) -> None:
        ask_r, self._ask = os.pipe()
        self._answer, answer_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._ask)
            os.close(self._answer)
            _serve_stamps(ask_r, answer_w)
        os.close(ask_r)
        os.close(answer_w)
        self._lock = asyncio.Lock()

    async def stamp(self, delay: float) -> float:
        loop = asyncio.get_running_loop()
        async with self._lock:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._answer, _set_once, ready)
            try:
                os.write(self._ask, orjson.dumps(delay) + b"\n")
                await asyncio.wait_for(ready, delay + 10)
            finally:
                loop.remove_reader(self._answer)
            return float(os.read(self._answer, 64))


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _serve_stamps(ask: int, answer: int) -> None:
    with os.fdopen(ask, "rb") as requests:
        for line in requests:
            time.sleep(float(line))
            os.write(answer, repr(time.time()).encode())
    os._exit(0)


async def stamp(request: web.Request) -> web.Response:
    delay = float(orjson.loads(await request.read())["delay"])
    stamped = await request.app[HELPER].stamp(delay)
    return web.Response(body=orjson.dumps({"result": stamped}), content_type="application/json")


HELPER = web.AppKey("helper", Helper)


async def serve(port: int, helper: Helper) -> None:
    app = web.Application()
    app[HELPER] = helper
    app.router.add_put("/StartFunction", start_function)
    app.router.add_put("/Stamp", stamp)
    await serve_app(app, port)


async def serve_app(app: web.Application, port: int) -> None:
    """Serve a reference's ``app`` on loopback ``port``, say ``ready``, run until killed."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    helper = Helper()  # forked before any event loop exists
    uvloop.run(serve(int(sys.argv[1]), helper))
