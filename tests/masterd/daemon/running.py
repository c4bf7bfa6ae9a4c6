"""``run_masterd()``: a real ganeti-masterd process on a free loopback port, and plain
HTTP to it (the tests act as nodes and operators with aiohttp, no client library)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from masterd.local import free_port
from tests.helpers import node_env

_BIND_ATTEMPTS = 3


class Masterd:
    """A ganeti-masterd child process of the test."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        port: int,
        workdir: Path,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.proc, self.port, self.workdir = proc, port, workdir
        self.log_path = workdir / "masterd.log"
        #: under TLS: the client certificate requests present unless told another
        self.client_ssl = client_ssl

    def url(self, path: str, context: ssl.SSLContext | None) -> str:
        return f"{'https' if context else 'http'}://{self.address}{path}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def put(
        self,
        procedure: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        method: str = "PUT",
        timeout_s: float = 30.0,
        client_ssl: ssl.SSLContext | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """One request: (status, decoded JSON body, headers); ``client_ssl``: another
        certificate than :attr:`client_ssl`."""
        data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        context = client_ssl or self.client_ssl
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                self.url(f"/{procedure}", context),
                data=data,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                ssl=context or True,
            ) as response,
        ):
            payload = await response.read()
            decoded = orjson.loads(payload) if payload else None
            return response.status, decoded, dict(response.headers)

    async def ok(self, procedure: str, body: Any = None, timeout_s: float = 30.0) -> Any:
        """The answer of a request that must succeed."""
        status, answer, _ = await self.put(procedure, body, timeout_s=timeout_s)
        assert status == 200, (procedure, status, answer)
        return answer

    async def get(self, path: str, client_ssl: ssl.SSLContext | None = None) -> tuple[int, str]:
        context = client_ssl or self.client_ssl
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                self.url(path, context),
                timeout=aiohttp.ClientTimeout(total=10),
                ssl=context or True,
            ) as response,
        ):
            return response.status, await response.text()

    async def nodes(self) -> dict[str, dict[str, Any]]:
        """ListNodes, by name."""
        return {node["name"]: node for node in (await self.ok("ListNodes", {}))["nodes"]}

    async def wait_ready(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self.proc.poll() is None:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                status, _, _ = await self.put("ListNodes", {}, timeout_s=1.0)
                if status == 200 and self._ready_logged():
                    return True
            await asyncio.sleep(0.05)
        return False

    def _ready_logged(self) -> bool:
        """This process logged daemon.ready (and not another one on a reused port)."""
        text = self.log_text()
        return f"pid={self.pid} " in text or f'"pid":{self.pid},' in text

    async def wait_exit(self, timeout_s: float) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        return None

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then wait; SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = await self.wait_exit(timeout_s)
        if status is None:
            self.proc.kill()
            await self.wait_exit(5.0)
        return status

    async def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        self.proc.kill()
        await self.wait_exit(10.0)


def spawn(
    args: Sequence[str],
    workdir: Path,
    port: int,
    env: dict[str, str] | None = None,
    client_ssl: ssl.SSLContext | None = None,
    prefix: Sequence[str] = (),
) -> Masterd:
    """``prefix``: a command it runs under (``prlimit --nofile=N:N --``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [*prefix, sys.executable, "-m", "masterd.daemon", "--bind", "127.0.0.1",
            "--port", str(port), "--state-dir", str(workdir / "state"), *args]  # fmt: skip
    with open(workdir / "masterd.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env={**os.environ, **node_env(env)})  # fmt: skip
    return Masterd(proc, port, workdir, client_ssl)


async def start_masterd(
    args: Sequence[str],
    workdir: Path,
    port: int | None = None,
    ready_timeout_s: float = 20.0,
    env: dict[str, str] | None = None,
    client_ssl: ssl.SSLContext | None = None,
    prefix: Sequence[str] = (),
) -> Masterd:
    """Start one and wait until it answers (under TLS, ``client_ssl`` must be an
    operator's); another port if the free one was taken."""
    for _ in range(_BIND_ATTEMPTS):
        masterd = spawn(args, workdir, port or free_port(), env, client_ssl, prefix)
        if await masterd.wait_ready(ready_timeout_s):
            return masterd
        await masterd.stop(5.0)
        if port is not None or "address already in use" not in masterd.log_text().lower():
            break
    raise RuntimeError(f"ganeti-masterd did not start:\n{masterd.log_text()}")


@contextlib.asynccontextmanager
async def run_masterd(
    args: Sequence[str] = (),
    *,
    workdir: Path,
    env: dict[str, str] | None = None,
    client_ssl: ssl.SSLContext | None = None,
    prefix: Sequence[str] = (),
) -> AsyncIterator[Masterd]:
    """A real ganeti-masterd in ``workdir``, stopped (SIGTERM, bounded) on leaving;
    ``client_ssl``: under TLS, the operator certificate requests present."""
    masterd = await start_masterd(args, workdir, env=env, client_ssl=client_ssl, prefix=prefix)
    try:
        yield masterd
    finally:
        await masterd.stop()


def registration(name: str, **changes: Any) -> dict[str, Any]:
    """A Register body for a node ``name`` (a fresh uuid unless given)."""
    body = {"uuid": str(uuid.uuid4()), "name": name, "address": "127.0.0.1", "port": 1811,
            "boot_id": "boot-1", "instance": uuid.uuid4().hex, "pid": 4242,
            "version": "1.2.0", "labels": ["rack1"], "functions": []}  # fmt: skip
    body.update(changes)
    return body


def events(*seqs: int, type: str = "disk.replacing", fnc_id: str | None = None) -> list[Any]:
    return [{"seq": seq, "type": type, "at": time.time(), "data": {"seq": seq},
             "fnc_id": fnc_id} for seq in seqs]  # fmt: skip


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """:func:`tests.helpers.eventually` for a check that must ask the daemon (awaits)."""
    end = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def state_of(masterd: Masterd, name: str) -> str:
    return str((await masterd.nodes())[name]["state"])
