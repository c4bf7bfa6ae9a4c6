"""Slow or idle clients cannot hold the daemon: they are cut off, others are served."""

from __future__ import annotations

import asyncio
import contextlib
import time

from masterd.local import LocalNode
from tests.helpers import run_node

HEADERS = b"PUT /Identify HTTP/1.1\r\nHost: node\r\nContent-Length: 50\r\nX-Pad: " + b"a" * 200


async def trickle(node: LocalNode, data: bytes, every_s: float) -> float | None:
    """Send ``data`` a byte at a time; seconds until the daemon hung up (None: never did)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    began = time.monotonic()
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1024), every_s) == b"":
                    return time.monotonic() - began
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1024), 10)
            return time.monotonic() - began
        return None
    except ConnectionError:
        return time.monotonic() - began
    finally:
        writer.close()


async def silent(node: LocalNode) -> float | None:
    return await trickle(node, b"", 0)


async def test_slow_and_silent_connections_are_cut_while_calls_are_served() -> None:
    async with run_node(["--idle-timeout", "1"]) as node, node.client() as client:
        slow = [asyncio.create_task(trickle(node, HEADERS, 0.3)) for _ in range(100)]
        idle = [asyncio.create_task(silent(node)) for _ in range(100)]
        await asyncio.sleep(0.3)
        began = time.monotonic()
        state = await client.start_function("echo", {"value": "served"}, timeout=10)
        assert state.result == "served"
        assert time.monotonic() - began < 3  # generous: the point is "not blocked"
        cut = await asyncio.wait_for(asyncio.gather(*slow, *idle), 30)
    assert all(seconds is not None and seconds < 1 + 3 for seconds in cut), cut


async def test_a_body_that_stalls_is_cut_off_and_the_daemon_goes_on() -> None:
    async with run_node(["--idle-timeout", "1"]) as node, node.client() as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        began = time.monotonic()
        writer.write(HEADERS + b"\r\n\r\n" + b'{"x":')  # 5 of the 50 bytes promised
        await writer.drain()
        assert await asyncio.wait_for(reader.read(4096), 10) == b""  # hung up on
        assert 0.5 < time.monotonic() - began < 1 + 3
        writer.close()
        assert (await client.identify())["pid"] == node.pid
