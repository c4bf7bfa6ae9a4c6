"""Making function processes: the Spawner interface, and an interpreter per call."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Protocol

from noded.process.child.containment import PLACEHOLDER
from noded.process.child.frames import CALL_MARK
from noded.process.function import FunctionProcess, ProcessLimits
from noded.process.tree import CallTrees, confine
from noded.process.watcher import DescriptorWatcher
from rpc_client.systemd import SYSTEMD_VARIABLES


class Spawner(Protocol):
    """Makes one function process per call, in two steps: :meth:`take` a process, then
    :meth:`FunctionProcess.start` it with its call (or kill it unsent)."""

    async def take(self) -> FunctionProcess:
        """A live process, confined to its call's tree (``CallTrees``), watched, and
        waiting for its call: whoever takes it starts it or kills its group."""

    def retire(self) -> None:
        """A reload replaced it: no new call will ask it (those it is making go on), so
        it keeps no process ahead of calls."""

    async def close(self) -> None: ...


class ExecSpawner:
    """Starts ``python -m noded.process.child.runner`` per call: simple, and slow (an
    interpreter each)."""

    def __init__(
        self,
        modules: list[str],
        limits: ProcessLimits,
        watcher: DescriptorWatcher | None = None,
        trees: CallTrees | None = None,
    ) -> None:
        self._argv = [sys.executable, "-P", "-m", "noded.process.child.runner", *modules]
        self._env = child_environment()
        self._limits = limits
        self._own_watcher = watcher is None
        self._watcher = watcher or DescriptorWatcher()
        self._trees = trees

    async def take(self) -> FunctionProcess:
        return start_process(self._argv, self._env, self._limits, self._watcher, self._trees)

    def retire(self) -> None:
        pass  # it keeps nothing ahead

    async def close(self) -> None:
        if self._own_watcher:
            self._watcher.close()


def start_process(
    argv: list[str],
    env: dict[str, str],
    limits: ProcessLimits,
    watcher: DescriptorWatcher,
    trees: CallTrees | None = None,
) -> FunctionProcess:
    """Start ``argv`` as a session leader with fresh pipes (stdin, stdout, stderr and
    the frame channel on fd 3); it waits on stdin for its call."""
    pipes: list[tuple[int, int]] = []
    try:
        for _ in range(4):
            pipes.append(os.pipe2(os.O_CLOEXEC))
    except BaseException:  # out of descriptors: give back the pipes already made
        close_all(*(fd for pipe in pipes for fd in pipe))
        raise
    child_ends = (pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1])
    parent_ends = (pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0])
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(child_ends)],
            setsid=True,
        )
    except BaseException:
        close_all(*child_ends, *parent_ends)
        raise
    finally:
        close_all(*child_ends)
    try:
        proc = FunctionProcess(pid, parent_ends, limits, watcher)
    except BaseException:  # e.g. no descriptor left for the pidfd: undo the spawn
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        close_all(*parent_ends)
        raise
    proc.watch()
    if trees is not None:
        proc.tree = confine(trees, pid, proc.birth)
    return proc


def child_environment() -> dict[str, str]:
    # The child imports exactly what the daemon could import, whatever its cwd was, and
    # does not see systemd's variables, which speak for the daemon alone.
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    env[CALL_MARK] = PLACEHOLDER  # each call's mark is written over it (child.containment)
    return env


def close_all(*fds: int) -> None:
    """Close each of ``fds``, whatever happens to one."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
