"""Loading the function modules, and loading them again without a restart
(ReloadFunctions, SIGHUP): a fresh registry from a fresh import, and a new fork server
that imported the new code.  Calls started after a reload run the new code; running calls
are untouched; a module that fails to import leaves the old functions serving.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from noded import registry as registry_module
from noded.calls.supervisor import Supervisor
from noded.config import NodedConfig
from noded.metrics import Metrics
from noded.process.forkserver import ForkServerError, ForkSpawner
from noded.process.function import ProcessLimits
from noded.process.spawners import ExecSpawner, Spawner
from noded.process.tree import CallTrees
from noded.registry import BUILTIN_MODULE, Registry, load_modules
from rpc_client.logs import event

log = logging.getLogger("noded.server")


def import_functions(modules: tuple[str, ...], paths: tuple[Path, ...]) -> Registry:
    """Import the function modules from ``paths``, then the usual path, then the working
    directory (function processes get the same path); say where it looked if one is not
    there."""
    for path in reversed(paths):
        sys.path.insert(0, str(path.resolve()))
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    registry = load_modules(())  # the built-ins first, as always; the modules fill it
    for module in modules:
        _import_function_module(module)
    return registry


def _import_function_module(module: str) -> None:
    """Import one function module; raises :class:`ImportError` saying where it was looked
    for if it is not there, or what its import raised (a syntax error, a module it needs
    that is not installed, its own code's exception) and where."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(f"{exc.name}.")):
            raise ImportError(f"function module {module!r} cannot be imported: "
                              f"{_what_raised(exc)}") from exc  # fmt: skip
        places = list(dict.fromkeys(place for place in sys.path if place))[:6]
        raise ImportError(
            f"cannot import function module {exc.name!r}: not found in {', '.join(places)}"
            f"{', ...' if len(sys.path) > 6 else ''}; give its directory with "
            "--functions-path DIR"
        ) from exc
    except Exception as exc:  # the module's own code may raise anything
        raise ImportError(
            f"function module {module!r} cannot be imported: {_what_raised(exc)}"
        ) from exc


def _what_raised(exc: BaseException) -> str:
    """``Type: message``, and where in the module's own code (a syntax error says where
    in its message already)."""
    said = f"{type(exc).__name__}: {exc}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    if frames and not isinstance(exc, SyntaxError):
        said += f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return said


def reimport_functions(modules: tuple[str, ...]) -> Registry:
    """Import the function modules again, with the packages they belong to (so that a
    helper module they import is new too), into a new registry.  If an import fails,
    the modules and the registry are as they were, and the error is raised."""
    stale = _modules_to_reload(modules)
    saved = {name: sys.modules.pop(name) for name in stale}
    old_registry = registry_module.REGISTRY
    registry_module.REGISTRY = Registry()
    importlib.invalidate_caches()
    try:
        return load_modules(modules)
    except BaseException:
        for name in _modules_to_reload(modules):
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        registry_module.REGISTRY = old_registry
        raise


def _modules_to_reload(modules: tuple[str, ...]) -> list[str]:
    """The loaded modules a reload imports again: the built-ins, each function module,
    and, outside noded, every module of its top-level package."""
    wanted = {BUILTIN_MODULE, *modules}
    packages = {name.split(".")[0] for name in modules if name.split(".")[0] != "noded"}
    return [name for name in list(sys.modules) if name in wanted or name.split(".")[0] in packages]


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
        self.supervisor: Supervisor | None = None

    async def reload(self) -> Reloaded:
        async with self._lock:
            assert self.supervisor is not None
            try:
                registry = reimport_functions(self._config.functions)
                spawner = await new_spawner(self._config, self._limits, self._metrics, self._trees)
            except Exception as exc:  # the function modules' own code may raise anything
                error = f"{type(exc).__name__}: {exc}"
                event(log, "functions.reload_failed", logging.ERROR, error=error)
                return Reloaded(False, f"{error}; the functions loaded before keep serving")
            if self.supervisor.shutting_down:
                await spawner.close()
                return Reloaded(False, "ganeti-noded is shutting down")
            self.supervisor.replace_functions(registry, spawner)
            event(log, "functions.reloaded", functions=registry.names())
            return Reloaded(True)
