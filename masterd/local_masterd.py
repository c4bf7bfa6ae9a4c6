"""Start a real ganeti-masterd on a free loopback port, for the demo.

``async with LocalMasterd.running(args, workdir=...) as masterd:`` starts
``python -m masterd.daemon``, waits until it answers ListNodes, and on leaving sends
SIGTERM and waits (bounded) for it to exit.  The ganeti-noded twin is
:class:`masterd.local.LocalNode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from masterd.local import free_port
from masterd.master_client import MasterClient
from rpc_client.client import ClientTimeouts
from rpc_client.errors import RPCError
from rpc_client.tls import TLSConfig

_QUICK = ClientTimeouts(connect_s=1.0, margin_s=1.0, quick_s=1.0)


class LocalMasterdError(RuntimeError):
    """Raised when a local ganeti-masterd does not start or does not stop."""


class LocalMasterd:
    """A ganeti-masterd child process of this program."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, workdir: Path, tls: TLSConfig | None
    ) -> None:
        self.proc, self.port, self.workdir = proc, port, workdir
        self.log_path = workdir / "masterd.log"
        #: the TLS settings of its clients (an operator certificate; None: plain HTTP)
        self.client_tls = tls

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> MasterClient:
        return MasterClient("127.0.0.1", self.port, tls=self.client_tls)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, args: Sequence[str] = (), *, workdir: Path, client_tls: TLSConfig | None = None,
        ready: bool = True,
    ) -> AsyncIterator[LocalMasterd]:  # fmt: skip
        """With ``ready=False``, at once, while it starts (its port is known, so a node
        may be started meanwhile): call :meth:`wait_ready` before asking it anything."""
        masterd = cls._spawn(args, workdir, free_port(), client_tls)
        try:
            if ready:
                await masterd.wait_ready()
            yield masterd
        finally:
            await masterd.stop()

    @classmethod
    def _spawn(
        cls, args: Sequence[str], workdir: Path, port: int, tls: TLSConfig | None
    ) -> LocalMasterd:
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "masterd.daemon", "--bind", "127.0.0.1", "--port",
                str(port), "--state-dir", str(workdir / "state"), *args]  # fmt: skip
        with open(workdir / "masterd.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=dict(os.environ))  # fmt: skip
        return cls(proc, port, workdir, tls)

    async def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Wait until it answers ListNodes; :class:`LocalMasterdError` if it exited or
        did not answer in time."""
        if not await self._answers(timeout_s):
            raise LocalMasterdError(f"ganeti-masterd did not start:\n{self.log_text()}")

    async def _answers(self, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        async with MasterClient("127.0.0.1", self.port, tls=self.client_tls,
                                timeouts=_QUICK) as master:  # fmt: skip
            while time.monotonic() < end and self.proc.poll() is None:
                with contextlib.suppress(RPCError):
                    await master.nodes()
                    return True
                await asyncio.sleep(0.05)
        return False

    async def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, then wait; SIGKILL if it does not exit in ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return await asyncio.to_thread(self.proc.wait, timeout_s)
        self.proc.kill()
        await asyncio.to_thread(self.proc.wait, 5.0)
        raise LocalMasterdError(f"ganeti-masterd pid {self.pid} ignored SIGTERM")
