"""Start a real ganeti-noded on a free loopback port, for the demo and the tests.

``async with LocalNode.running(...) as node:`` starts ``python -m noded``, waits until
it answers Identify, and on leaving sends SIGTERM and waits (bounded) for it to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from rpc_client.client import ClientTimeouts, NodeClient
from rpc_client.errors import RPCError
from rpc_client.tls import TLSConfig

_QUICK = ClientTimeouts(connect_s=1.0, margin_s=1.0, quick_s=1.0)
_BIND_ATTEMPTS = 3


class LocalNodeError(RuntimeError):
    """Raised when a local ganeti-noded does not start or does not stop."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalNode:
    """A ganeti-noded child process of this program."""

    def __init__(self, proc: subprocess.Popen[bytes], host: str, port: int, workdir: Path):
        self.proc = proc
        self.host = host
        self.port = port
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.log_path = workdir / "noded.log"
        #: the TLS settings clients of this daemon use (None: plain HTTP)
        self.client_tls: TLSConfig | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, **kwargs: Any) -> NodeClient:
        kwargs.setdefault("tls", self.client_tls)
        return NodeClient(self.host, self.port, **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        workdir: Path | None = None,
        port: int | None = None,
        prefix: Sequence[str] = (),
        client_tls: TLSConfig | None = None,
        ready_timeout_s: float = 20.0,
    ) -> AsyncIterator[LocalNode]:
        with contextlib.ExitStack() as stack:
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="noded-")))
            node = await cls.start(
                args,
                host=host,
                env=env,
                workdir=workdir,
                port=port,
                prefix=prefix,
                client_tls=client_tls,
                ready_timeout_s=ready_timeout_s,
            )
            try:
                yield node
            finally:
                await node.stop()

    @classmethod
    async def start(
        cls,
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        workdir: Path,
        port: int | None = None,
        prefix: Sequence[str] = (),
        client_tls: TLSConfig | None = None,
        ready_timeout_s: float = 20.0,
    ) -> LocalNode:
        """Start a daemon and wait until it answers; retries if a free port was taken.

        ``prefix`` runs the daemon through another command that execs it in place,
        such as ``ip netns exec NAME``.
        """
        for _ in range(_BIND_ATTEMPTS):
            node = cls._spawn(prefix, args, host, port or free_port(), env, workdir)
            node.client_tls = client_tls
            if await node._ready_or_stopped(ready_timeout_s):
                return node
            if node.proc.poll() is None:
                await node.stop()
                raise LocalNodeError(
                    f"ganeti-noded not ready in {ready_timeout_s} s:\n{node.log_text()}"
                )
            if port is not None or "address already in use" not in node.log_text().lower():
                break
        raise LocalNodeError(
            f"ganeti-noded exited with status {node.proc.returncode}:\n{node.log_text()}"
        )

    @classmethod
    def _spawn(
        cls,
        prefix: Sequence[str],
        args: Sequence[str],
        host: str,
        port: int,
        env: dict[str, str] | None,
        workdir: Path,
    ) -> LocalNode:
        workdir.mkdir(parents=True, exist_ok=True)
        daemon = [sys.executable, "-m", "noded", "--bind", host, "--port", str(port)]
        argv = [*prefix, *daemon, "--state-dir", str(workdir / "state"), *args]
        with open(workdir / "noded.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **(env or {})},
            )
        return cls(proc, host, port, workdir)

    async def _ready_or_stopped(self, timeout_s: float) -> bool:
        """:meth:`wait_ready`; if that is cancelled or fails, the daemon is stopped first,
        rather than left running with no one to stop it."""
        try:
            return await self.wait_ready(timeout_s)
        except BaseException:
            with contextlib.suppress(LocalNodeError):
                await asyncio.shield(self.stop(10.0))
            raise

    async def wait_ready(self, timeout_s: float) -> bool:
        """Poll Identify until this daemon answers; False if it exited or time ran out."""
        end = time.monotonic() + timeout_s
        async with self.client(timeouts=_QUICK) as client:
            while time.monotonic() < end and self.proc.poll() is None:
                with contextlib.suppress(RPCError):
                    if (await client.identify()).get("pid") == self.pid:
                        return True
                await asyncio.sleep(0.05)
        return False

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the daemon to exit; its status, or None."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        return None

    async def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in ``timeout_s``."""
        self.signal(signal.SIGTERM)
        status = await self.wait_exit(timeout_s)
        if status is None:
            self.proc.kill()
            await self.wait_exit(5.0)
            raise LocalNodeError(f"ganeti-noded pid {self.pid} ignored SIGTERM for {timeout_s} s")
        return status
