"""ganeti-masterd out of file descriptors: under RLIMIT_NOFILE 128, each of 300 connections
held open at once is answered 200 or 503 Busy with Retry-After, none reset or closed
unanswered (as ganeti-noded, tests/noded/http/test_descriptors.py); then it serves as
before."""

from __future__ import annotations

import asyncio
import collections
import shutil
import ssl
from pathlib import Path

import pytest

from masterd.local import free_port
from rpc_client import certs
from tests.helpers import classify_raw_answer
from tests.masterd.daemon.running import run_masterd, spawn
from tests.pki import Pki

#: the daemon's descriptor limit, soft and hard
NOFILE = 128
CONNECTIONS = 300
REQUEST = (
    b"PUT /ListNodes HTTP/1.1\r\nHost: masterd\r\nConnection: close\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def ask(connection: Connection | BaseException) -> str:
    """ListNodes on a connection opened before: the answer, classified."""
    if isinstance(connection, BaseException):
        return f"connect error: {type(connection).__name__}"
    reader, writer = connection
    try:
        async with asyncio.timeout(60):
            writer.write(REQUEST)
            await writer.drain()
            return classify_raw_answer(await reader.read())
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


async def ask_over_tls(port: int, context: ssl.SSLContext) -> str:
    """ListNodes over a TLS connection of its own: the answer, classified."""
    try:
        async with asyncio.timeout(60):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
            )
            try:
                writer.write(REQUEST)
                await writer.drain()
                return classify_raw_answer(await reader.read())
            finally:
                writer.close()
    except TimeoutError:
        return "no answer in time"
    except (OSError, ssl.SSLError) as exc:
        return f"connection error: {type(exc).__name__}"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit(1)")
async def test_out_of_descriptors_over_tls_connections_wait_their_turn(
    pki: Pki, tmp_path: Path
) -> None:
    """Over TLS a busy answer would need a handshake: short of descriptors, connections
    wait in the backlog and are served in turn, none reset."""
    own = certs.issue(pki.ca, "masterd1", "masterd", addresses=("127.0.0.1",))
    args = ["--tls-cert", str(own.cert), "--tls-key", str(own.key),
            "--tls-ca", str(pki.ca / "ca.crt")]  # fmt: skip
    operator = pki.master("operator1").client_context()
    prefix = ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--"]
    async with run_masterd(args, workdir=tmp_path, client_ssl=operator, prefix=prefix) as m:
        asked = [ask_over_tls(m.port, operator) for _ in range(CONNECTIONS)]
        outcomes = collections.Counter(await asyncio.gather(*asked))
        assert outcomes == {"200": CONNECTIONS}, outcomes
        assert (await m.put("ListNodes", {}))[0] == 200
