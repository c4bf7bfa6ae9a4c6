"""ganeti-masterd out of file descriptors: under RLIMIT_NOFILE 128, each of 300 connections
held open at once is answered 200 or 503 Busy with Retry-After, none reset or closed
unanswered (as ganeti-noded, tests/noded/http/test_descriptors.py); then it serves as
before."""

from __future__ import annotations

import asyncio
import collections
import shutil
from pathlib import Path

import orjson
import pytest

from masterd.local import free_port
from tests.masterd.daemon.running import run_masterd, spawn

#: the daemon's descriptor limit, soft and hard
NOFILE = 128
CONNECTIONS = 300
REQUEST = (
    b"PUT /ListNodes HTTP/1.1\r\nHost: masterd\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def classify(answer: bytes) -> str:
    """``200``, ``503 Busy with Retry-After``, another status, or how it ended."""
    if not answer:
        return "connection closed unanswered"
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")[1]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if status == "503":
        kind = orjson.loads(payload)["error"]["type"]
        return f"503 {kind}" + (" with Retry-After" if "retry-after" in headers else "")
    return status


async def ask(connection: Connection | BaseException) -> str:
    """ListNodes on a connection opened before: the answer, classified."""
    if isinstance(connection, BaseException):
        return f"connect error: {type(connection).__name__}"
    reader, writer = connection
    try:
        async with asyncio.timeout(60):
            writer.write(REQUEST)
            await writer.drain()
            return classify(await reader.read())
    except TimeoutError:
        return "no answer in time"
    except OSError as exc:
        return f"connection error: {type(exc).__name__}"
    finally:
        writer.close()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_out_of_descriptors_every_connection_is_answered(tmp_path: Path) -> None:
    prefix = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    async with run_masterd(workdir=tmp_path, prefix=prefix) as masterd:
        # all open at once, each holding a descriptor of masterd's until it is answered
        opened = await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", masterd.port) for _ in range(CONNECTIONS)),
            return_exceptions=True,
        )
        outcomes = collections.Counter(await asyncio.gather(*(ask(c) for c in opened)))
        assert set(outcomes) <= {"200", "503 Busy with Retry-After"}, outcomes
        assert outcomes["200"] >= 1 and outcomes["503 Busy with Retry-After"] >= 1, outcomes
        log = masterd.log_text()
        assert "limit.descriptors" in log or "http.accept_failed" in log, log
        # and it serves on, as before
        status, answer, _ = await masterd.put("ListNodes", {})
        assert (status, answer) == (200, {"nodes": []})


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_a_reserve_the_limit_cannot_hold_is_refused_at_start(tmp_path: Path) -> None:
    prefix = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    masterd = spawn(["--descriptor-reserve", str(NOFILE)], tmp_path, free_port(), prefix=prefix)
    try:
        assert await masterd.wait_exit(20) == 1
    finally:
        await masterd.stop()
    log = masterd.log_text()
    assert f"cannot start: RLIMIT_NOFILE is {NOFILE}" in log and "--descriptor-reserve" in log


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_a_reserve_the_limit_holds_starts(tmp_path: Path) -> None:
    prefix = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    async with run_masterd(["--descriptor-reserve", "64"], workdir=tmp_path, prefix=prefix) as m:
        assert (await m.put("ListNodes", {}))[0] == 200


def soft_open_files_limit_of(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if x.startswith("Max open files"))  # fmt: skip
    return int(line.split()[3])


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_the_soft_open_files_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    prefix = ["prlimit", f"--nofile={NOFILE}:{4 * NOFILE}", "--"]
    async with run_masterd(workdir=tmp_path, prefix=prefix) as masterd:
        assert soft_open_files_limit_of(masterd.pid) == 4 * NOFILE
