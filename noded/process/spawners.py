"""Making function processes: the Spawner interface, and an interpreter per call."""

from __future__ import annotations

import os
import sys
from typing import Protocol

from noded.process.function import FunctionProcess, ProcessLimits
from noded.process.watcher import DescriptorWatcher
from noded.systemd import SYSTEMD_VARIABLES


class Spawner(Protocol):
    """Makes one function process per call."""

    async def spawn(self, request: bytes) -> FunctionProcess: ...

    async def close(self) -> None: ...


class ExecSpawner:
    """Starts ``python -m noded.process.child.runner`` per call: simple, and slow (an
    interpreter each)."""

    def __init__(
        self, modules: list[str], limits: ProcessLimits, watcher: DescriptorWatcher | None = None
    ) -> None:
        self._argv = [sys.executable, "-P", "-m", "noded.process.child.runner", *modules]
        self._env = child_environment()
        self._limits = limits
        self._own_watcher = watcher is None
        self._watcher = watcher or DescriptorWatcher()

    async def spawn(self, request: bytes) -> FunctionProcess:
        return FunctionProcess.spawn(self._argv, self._env, request, self._limits, self._watcher)

    async def close(self) -> None:
        if self._own_watcher:
            self._watcher.close()


def child_environment() -> dict[str, str]:
    # The child imports exactly what the daemon could import, whatever its cwd was, and
    # does not see systemd's variables, which speak for the daemon alone.
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    return env
