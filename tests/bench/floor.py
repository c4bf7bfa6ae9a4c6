"""Reference B, the HTTP floor: aiohttp on uvloop answering StartFunction with a fixed
call state, without any process.  ``python -m tests.bench.floor PORT``."""

from __future__ import annotations

import sys

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


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_put("/StartFunction", start_function)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await __import__("asyncio").Event().wait()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
