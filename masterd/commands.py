"""Master commands: ``@command``, what nodes may run on ganeti-masterd with CallMaster.

::

    from masterd import command

    @command
    def allocate_slot(node: str, disk: str) -> int:   # ``node``: filled by masterd
        ...

Typed like noded's ``@function`` (:mod:`rpc_client.declarations`: parameters -> JSON
Schema -> argument checks).  A parameter named ``node`` gets the calling node's name and
is not an argument: an ``args`` key ``node`` is then ``InvalidArguments``.  Plain
functions run in a worker thread of masterd, ``async def`` ones on its event loop.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

from rpc_client.declarations import Declaration, Declarations, declare
from rpc_client.errors import InvalidArguments

F = TypeVar("F", bound=Callable[..., Any])

#: the parameter masterd fills with the calling node's name
NODE_PARAM = "node"


@dataclass(frozen=True)
class CommandSpec(Declaration):
    """A registered command: its declaration (without ``node``), whether it takes the
    caller's name, and whether it runs on the loop."""

    takes_node: bool = False
    is_async: bool = False

    def check_args(self, args: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` unless ``args`` fit (``node`` never does when
        the command takes it)."""
        if self.takes_node and NODE_PARAM in args:
            raise InvalidArguments(
                f"{self.name}() argument 'node' is the calling node's name, given by "
                "ganeti-masterd: leave it out of args"
            )
        super().check_args(args)

    def keywords(self, args: dict[str, Any], node: str) -> dict[str, Any]:
        """The keyword arguments of one run for ``node``."""
        return {**args, NODE_PARAM: node} if self.takes_node else dict(args)

    def describe(self) -> dict[str, Any]:
        return {"doc": self.doc, "params": self.schema(), "takes_node": self.takes_node}


class Commands(Declarations[CommandSpec]):
    """Named commands, filled by ``@command`` as modules are imported."""

    def __init__(self) -> None:
        super().__init__("command")

    def describe(self) -> dict[str, Any]:
        return {name: self._by_name[name].describe() for name in self.names()}


COMMANDS = Commands()


def command_spec(func: Callable[..., Any], name: str) -> CommandSpec:
    """The spec of ``func``; raises ``TypeError`` for signatures the wire cannot call."""
    declaration = declare(func, name)
    params = tuple(p for p in declaration.params if p.name != NODE_PARAM)
    return CommandSpec(
        **{**vars(declaration), "params": params},
        takes_node=len(params) < len(declaration.params),
        is_async=inspect.iscoroutinefunction(func),
    )


@overload
def command(func: F, /) -> F: ...
@overload
def command(*, name: str | None = None) -> Callable[[F], F]: ...


def command(func: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Register a master command: ``@command``, or ``@command(name=...)``."""

    def register(f: F) -> F:
        COMMANDS.add(command_spec(f, name or f.__name__))
        return f

    return register(func) if func is not None else register


def load_commands(modules: Iterable[str], paths: Iterable[Path] = ()) -> Commands:
    """Import the named modules from ``paths``, then the usual path, then the working
    directory; their ``@command``s fill the table.  A module that cannot be imported is a
    ``ValueError`` naming it (and, if it is not there, where it was looked for)."""
    for path in reversed(list(paths)):
        sys.path.insert(0, str(path.resolve()))
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module == exc.name or module.startswith(f"{exc.name}.")):
                raise ValueError(f"--commands {module}: {type(exc).__name__}: {exc}") from exc
            places = list(dict.fromkeys(place for place in sys.path if place))
            raise ValueError(
                f"--commands {module}: cannot import module {exc.name!r}: not found in "
                f"{', '.join(places[:6])}{', ...' if len(places) > 6 else ''}; give its "
                "directory with --commands-path DIR"
            ) from exc
        except Exception as exc:
            raise ValueError(f"--commands {module}: {type(exc).__name__}: {exc}") from exc
    return COMMANDS
