"""The function registry: ``@function`` and the functions' resource limits.

A function's parameters are named; their annotations give a JSON Schema and the checks
the daemon makes before it starts any process (:mod:`rpc_client.declarations`, shared
with masterd's ``@command``).  This module imports nothing heavy: the function processes
import it too.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from rpc_client.declarations import Declaration, Declarations, Param, declare
from rpc_client.protocol import shown

F = TypeVar("F", bound=Callable[..., Any])

BUILTIN_MODULE = "noded.builtins"


@dataclass(frozen=True)
class FunctionSpec(Declaration):
    """A registered function: its declaration and its own resource limits."""

    #: its own resource limits (LIMIT_NAMES), over the daemon's defaults
    limits: dict[str, float] = field(default_factory=dict)

    def limits_over(self, defaults: dict[str, float]) -> dict[str, float]:
        """The limits a call of it runs under: its own, else the daemon's."""
        return {**defaults, **self.limits}

    def describe(self, default_limits: dict[str, float] | None = None) -> dict[str, Any]:
        """This function's entry in DescribeFunctions."""
        limits = self.limits_over(default_limits or {})
        return {"doc": self.doc, "params": self.schema(), "limits": limits}


class Registry(Declarations[FunctionSpec]):
    """Named functions, filled by ``@function`` as modules are imported."""

    def __init__(self) -> None:
        super().__init__("function")

    def describe(self, default_limits: dict[str, float] | None = None) -> dict[str, Any]:
        return {name: self._by_name[name].describe(default_limits) for name in self.names()}

    def not_found(self, name: str) -> str:
        """What UnknownFunction says of ``name``: the close match if there is one, and
        how to list the functions."""
        close = difflib.get_close_matches(name, list(self.names()), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"no function named {shown(name)} here{hint}; `rpc-cli functions` "
                "(DescribeFunctions) lists them")  # fmt: skip


REGISTRY = Registry()


@overload
def function(func: F, /) -> F: ...
@overload
def function(
    *, name: str | None = None, limits: dict[str, float] | None = None
) -> Callable[[F], F]: ...


def function(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    limits: dict[str, float] | None = None,
) -> F | Callable[[F], F]:
    """Register a function that the daemon may run: ``@function``, or
    ``@function(name=..., limits={"memory_mb": 512, "cpu_s": 60, "open_files": 256})``."""
    checked = check_limits(limits or {}, "@function limits")

    def register(f: F) -> F:
        spec = spec_of(f, name or f.__name__)
        REGISTRY.add(dataclasses.replace(spec, limits=checked))
        return f

    return register(func) if func is not None else register


LIMIT_NAMES = ("memory_mb", "cpu_s", "open_files", "processes")


def check_limits(limits: dict[str, Any], where: str) -> dict[str, float]:
    """Resource limits, checked: known names, positive numbers; raises ``ValueError``."""
    unknown = sorted(set(limits) - set(LIMIT_NAMES))
    if unknown:
        raise ValueError(f"{where}: unknown limits {unknown}; known: {', '.join(LIMIT_NAMES)}")
    for limit, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{where}: {limit} must be a number > 0, got {value!r}")
    return dict(limits)


def load_modules(modules: Iterable[str]) -> Registry:
    """Import the built-ins and the named modules; their ``@function``s fill the registry."""
    for module in [BUILTIN_MODULE, *modules]:
        importlib.import_module(module)
    return REGISTRY


def spec_of(func: Callable[..., Any], name: str) -> FunctionSpec:
    """Build the spec of ``func``; raises ``TypeError`` for signatures the wire cannot call."""
    return FunctionSpec(**vars(declare(func, name)))


__all__ = ["LIMIT_NAMES", "FunctionSpec", "Param", "Registry", "function", "spec_of"]
