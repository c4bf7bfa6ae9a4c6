"""Loading the function modules, and loading them again without a restart
(ReloadFunctions, SIGHUP): a fresh registry from a fresh import, and a new fork server
that imported the new code.  Calls started after a reload run the new code; running calls
are untouched; a module that fails to import leaves the old functions serving.

At start-up the daemon imports the modules itself (it serves nothing yet); a reload
imports them in child processes only (:mod:`noded.process.importer`, then the new fork
server), each bounded by ``--import-timeout``, so that the event loop never waits for a
module's import.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from noded.calls.supervisor import Supervisor
from noded.config import NodedConfig
from noded.metrics import Metrics
from noded.process.child.describe import import_functions as import_functions  # start-up
from noded.process.fork_spawner import ForkServerError, ForkSpawner
from noded.process.function import ProcessLimits
from noded.process.importer import import_in_child
from noded.process.spawners import ExecSpawner, Spawner
from noded.process.tree import CallTrees
from rpc_client.logs import event

log = logging.getLogger("noded.server")

_SHUTTING_DOWN = "ganeti-noded is shutting down"


async def make_spawner(
    config: NodedConfig, limits: ProcessLimits, metrics: Metrics, trees: CallTrees
) -> Spawner:
    """The fork server, or an interpreter per call if asked for or if it cannot start."""
    try:
        return await new_spawner(config, limits, metrics, trees)
    except (ForkServerError, OSError) as exc:
        event(log, "spawn.fallback", logging.ERROR, method="exec", error=str(exc))
        return ExecSpawner(list(config.functions), limits, trees=trees)


async def new_spawner(
    config: NodedConfig, limits: ProcessLimits, metrics: Metrics, trees: CallTrees
) -> Spawner:
    """A spawner of the configured kind; raises if the fork server cannot start."""
    modules = list(config.functions)
    if config.spawn == "exec":
        return ExecSpawner(modules, limits, trees=trees)
    spawner = ForkSpawner(
        modules, limits, spares=config.spare_processes,
        on_restart=metrics.zygote_restarts.inc, trees=trees,
        ready_timeout_s=config.import_timeout_s,
    )  # fmt: skip
    await spawner.start()
    return spawner


@dataclass(frozen=True)
class Reloaded:
    """What a reload did: ``reloaded``, or the ``error`` that kept the old functions."""

    reloaded: bool
    error: str | None = None


class FunctionReloader:
    """Reloads the function modules of one daemon, one reload at a time."""

    def __init__(
        self, config: NodedConfig, limits: ProcessLimits, metrics: Metrics, trees: CallTrees
    ) -> None:
        self._config = config
        self._limits = limits
        self._metrics = metrics
        self._trees = trees
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.supervisor: Supervisor | None = None

    def stop(self) -> None:
        """The daemon stops: a reload under way or asked for ends now (its importer or
        new fork server killed) and is answered "shutting down"."""
        self._stopping.set()

    async def reload(self) -> Reloaded:
        """Reload the functions, unless the daemon stops first (then say so)."""
        work = asyncio.ensure_future(self._reload())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not work.done():
                work.cancel()  # what it started is killed as the task unwinds
                await asyncio.wait({work})
        if work.cancelled():
            event(log, "functions.reload_failed", logging.WARNING, error=_SHUTTING_DOWN)
            return Reloaded(False, _SHUTTING_DOWN)
        return work.result()

    async def _reload(self) -> Reloaded:
        async with self._lock:
            assert self.supervisor is not None
            try:
                modules = list(self._config.functions)
                registry = await import_in_child(modules, self._config.import_timeout_s)
                spawner = await new_spawner(self._config, self._limits, self._metrics, self._trees)
            except Exception as exc:  # the function modules' own code may raise anything
                said_why = isinstance(exc, ImportError)  # in the importing process's words
                error = str(exc) if said_why else f"{type(exc).__name__}: {exc}"
                event(log, "functions.reload_failed", logging.ERROR, error=error)
                return Reloaded(False, f"{error}; the functions loaded before keep serving")
            if self.supervisor.shutting_down:
                await spawner.close()
                return Reloaded(False, _SHUTTING_DOWN)
            self.supervisor.replace_functions(registry, spawner)
            event(log, "functions.reloaded", functions=registry.names())
            return Reloaded(True)
