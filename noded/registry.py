"""The function registry: ``@function``, parameter schemas and argument checks.

A function's parameters are named; their annotations give a JSON Schema and the checks
the daemon makes before it starts any process.  This module imports nothing heavy: the
function processes import it too.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from rpc_client.errors import InvalidArguments

F = TypeVar("F", bound=Callable[..., Any])

BUILTIN_MODULE = "noded.builtins"

_JSON_TYPES: dict[Any, str] = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


@dataclass(frozen=True)
class Param:
    """One named parameter: its JSON Schema and whether a caller must give it."""

    name: str
    schema: dict[str, Any]
    required: bool


@dataclass(frozen=True)
class FunctionSpec:
    """A registered function."""

    name: str
    func: Callable[..., Any]
    doc: str
    params: tuple[Param, ...]
    takes_any_keyword: bool
    #: its own resource limits (LIMIT_NAMES), over the daemon's defaults
    limits: dict[str, float] = field(default_factory=dict)

    def limits_over(self, defaults: dict[str, float]) -> dict[str, float]:
        """The limits a call of it runs under: its own, else the daemon's."""
        return {**defaults, **self.limits}

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of ``fn_args``."""
        return {
            "type": "object",
            "properties": {p.name: p.schema for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": self.takes_any_keyword,
        }

    def describe(self, default_limits: dict[str, float] | None = None) -> dict[str, Any]:
        """This function's entry in DescribeFunctions."""
        limits = self.limits_over(default_limits or {})
        return {"doc": self.doc, "params": self.schema(), "limits": limits}

    def check_args(self, fn_args: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` unless ``fn_args`` fit the parameters."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(fn_args) - set(known))
        if unknown and not self.takes_any_keyword:
            raise InvalidArguments(f"{self.name}() got unknown arguments: {', '.join(unknown)}")
        missing = [p.name for p in self.params if p.required and p.name not in fn_args]
        if missing:
            raise InvalidArguments(f"{self.name}() is missing arguments: {', '.join(missing)}")
        for name, value in fn_args.items():
            if name in known and not matches_schema(value, known[name].schema):
                raise InvalidArguments(
                    f"{self.name}() argument {name!r} must be "
                    f"{describe_schema(known[name].schema)}, got {_json_type_of(value)}"
                )


class Registry:
    """Named functions, filled by ``@function`` as modules are imported."""

    def __init__(self) -> None:
        self._functions: dict[str, FunctionSpec] = {}

    def add(self, spec: FunctionSpec) -> None:
        existing = self._functions.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise ValueError(
                f"function name {spec.name!r} registered twice: by "
                f"{_where(existing.func)} and by {_where(spec.func)}"
            )
        self._functions[spec.name] = spec

    def get(self, name: str) -> FunctionSpec | None:
        return self._functions.get(name)

    def names(self) -> list[str]:
        return sorted(self._functions)

    def describe(self, default_limits: dict[str, float] | None = None) -> dict[str, Any]:
        return {name: self._functions[name].describe(default_limits) for name in self.names()}


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
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params: list[Param] = []
    takes_any_keyword = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            takes_any_keyword = True
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
            raise TypeError(f"function {name!r}: parameter {param.name!r} must be nameable")
        schema = schema_of(hints.get(param.name, Any), f"{name}({param.name})")
        required = param.default is param.empty
        if not required and _is_json_value(param.default):
            schema = {**schema, "default": param.default}
        params.append(Param(param.name, schema, required))
    doc = inspect.getdoc(func) or ""
    return FunctionSpec(name, func, doc, tuple(params), takes_any_keyword)


def schema_of(annotation: Any, where: str) -> dict[str, Any]:
    """The JSON Schema of one annotation."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}
    if annotation is None:
        annotation = type(None)
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(arg, where) for arg in args]}
    if origin is list and len(args) == 1:
        return {"type": "array", "items": schema_of(args[0], where)}
    if origin is dict and len(args) == 2 and args[0] is str:
        return {"type": "object", "additionalProperties": schema_of(args[1], where)}
    raise TypeError(f"{where}: annotation {annotation!r} has no JSON form")


def matches_schema(value: Any, schema: dict[str, Any]) -> bool:
    """Check a JSON value against the small schema subset that :func:`schema_of` makes."""
    if "anyOf" in schema:
        return any(matches_schema(value, option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind is None:
        return True
    if _json_type_of(value) != kind and not (
        kind == "number" and _json_type_of(value) == "integer"
    ):
        return False
    if kind == "array" and "items" in schema:
        return all(matches_schema(item, schema["items"]) for item in value)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return all(matches_schema(v, schema["additionalProperties"]) for v in value.values())
    return True


def describe_schema(schema: dict[str, Any]) -> str:
    """A schema in words, for error messages: ``integer``, ``string or null``."""
    if "anyOf" in schema:
        return " or ".join(describe_schema(option) for option in schema["anyOf"])
    kind = schema.get("type", "any JSON value")
    if kind == "array" and "items" in schema:
        return f"array of {describe_schema(schema['items'])}"
    return str(kind)


def _json_type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _is_json_value(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _where(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"
