"""The fork server's own process: started here, watched through a pidfd, reaped here;
and what it answers on its control socket, received close-on-exec."""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import signal
import socket
import sys

from noded.process import helpers
from noded.process.child import fork_server
from noded.process.spawners import child_environment


class ForkServerProcess:
    """The fork server's process: started here, watched through a pidfd, reaped here."""

    CONTROL_FD = 3

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self._pidfd = os.pidfd_open(pid)
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self._loop.add_reader(self._pidfd, self._on_exit)
        helpers.track(pid, self.kill)  # a forced exit kills it, even mid-import

    @classmethod
    def start(cls, modules: list[str], control_fd: int) -> ForkServerProcess:
        """The fork server (:mod:`noded.process.child.fork_server`) in its own session,
        ``control_fd`` as its fd 3."""
        argv = [
            sys.executable,
            "-P",
            "-m",
            "noded.process.child.fork_server",
            str(cls.CONTROL_FD),
            *modules,
        ]
        pid = os.posix_spawn(
            argv[0],
            argv,
            _fork_server_environment(),
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
        helpers.untrack(self.pid)
        _, status = os.waitpid(self.pid, 0)
        os.close(self._pidfd)
        self.exited.set_result(status)

    def kill(self) -> None:
        """SIGKILL now (a stopped process dies too); its exit is seen as any other."""
        if not self.exited.done():
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; reaped."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.exited.done():
                return
            signal.pidfd_send_signal(self._pidfd, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), timeout_s)


def receive_answer(control: socket.socket, max_bytes: int, max_fds: int) -> tuple[bytes, list[int]]:
    """One answer of the fork server and the descriptors it carries, close-on-exec from the
    start: a fork server or interpreter started later must not hold a call's pipes (a
    spare would never see EOF on its stdin).  Not ``socket.recv_fds``, which drops its
    ``flags`` (CPython 3.11)."""
    fds = array.array("i")
    message, ancillary, _, _ = control.recvmsg(
        max_bytes, socket.CMSG_LEN(max_fds * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return message, list(fds)


def not_ready_reason(failure: BaseException | None, timeout_s: float) -> str:
    """Why a new fork server did not say it was ready: ``failure`` is what waiting raised."""
    if isinstance(failure, TimeoutError):
        return (
            "the fork server did not import the function modules within "
            f"{timeout_s:g} s (--import-timeout)"
        )
    if failure is not None:
        return f"the fork server did not start: {failure!r}"
    return "the fork server could not import the function modules"


def _fork_server_environment() -> dict[str, str]:
    # Bind every library symbol when the fork server loads, rather than at each one's first
    # call, which every forked child would repeat, copying the pages it writes: 251 -> 228
    # page faults a child.  The fork server takes the variable out again (see
    # noded.process.child.fork_server), so that what a function runs is not made to bind
    # eagerly too.
    env = child_environment()
    if "LD_BIND_NOW" not in env:
        env["LD_BIND_NOW"] = "1"
        env[fork_server.BIND_NOW_ADDED] = "1"
    return env
