"""Making function processes: the Spawner interface, an interpreter per call, and the
fork server's own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Protocol

from noded import zygote
from noded.process.function import FunctionProcess, ProcessLimits
from noded.process.watcher import DescriptorWatcher
from noded.systemd import SYSTEMD_VARIABLES


class Spawner(Protocol):
    """Makes one function process per call."""

    async def spawn(self, request: bytes) -> FunctionProcess: ...

    async def close(self) -> None: ...


class ExecSpawner:
    """Starts ``python -m noded.runner`` per call: simple, and slow (an interpreter each)."""

    def __init__(
        self, modules: list[str], limits: ProcessLimits, watcher: DescriptorWatcher | None = None
    ) -> None:
        self._argv = [sys.executable, "-P", "-m", "noded.runner", *modules]
        self._env = _child_environment()
        self._limits = limits
        self._own_watcher = watcher is None
        self._watcher = watcher or DescriptorWatcher()

    async def spawn(self, request: bytes) -> FunctionProcess:
        return FunctionProcess.spawn(self._argv, self._env, request, self._limits, self._watcher)

    async def close(self) -> None:
        if self._own_watcher:
            self._watcher.close()


class ZygoteProcess:
    """The fork server's process: started here, watched through a pidfd, reaped here."""

    CONTROL_FD = 3

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self._pidfd = os.pidfd_open(pid)
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self._loop.add_reader(self._pidfd, self._on_exit)

    @classmethod
    def start(cls, modules: list[str], control_fd: int) -> ZygoteProcess:
        """``python -m noded.zygote`` in its own session, ``control_fd`` as its fd 3."""
        argv = [sys.executable, "-P", "-m", "noded.zygote", str(cls.CONTROL_FD), *modules]
        pid = os.posix_spawn(
            argv[0],
            argv,
            _zygote_environment(),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, control_fd, cls.CONTROL_FD),
            ],
            setsid=True,  # a Ctrl-C meant for the daemon must not reach it
        )
        return cls(pid)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._pidfd)
        self.exited.set_result(status)

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; reaped."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.exited.done():
                return
            signal.pidfd_send_signal(self._pidfd, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), timeout_s)


def _zygote_environment() -> dict[str, str]:
    # Bind every library symbol when the zygote loads, rather than at each one's first
    # call, which every forked child would repeat, copying the pages it writes: 251 -> 228
    # page faults a child.  The zygote takes the variable out again (see noded.zygote),
    # so that what a function runs is not made to bind eagerly too.
    env = _child_environment()
    if "LD_BIND_NOW" not in env:
        env["LD_BIND_NOW"] = "1"
        env[zygote.BIND_NOW_ADDED] = "1"
    return env


def _child_environment() -> dict[str, str]:
    # The child imports exactly what the daemon could import, whatever its cwd was, and
    # does not see systemd's variables, which speak for the daemon alone.
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return env
