"""Declarations: a callable's named parameters -> JSON Schema -> argument checks.

What noded's ``@function`` and masterd's ``@command`` both need, once: a parameter's
annotation gives its JSON Schema (``int`` -> ``integer``, ``str | None`` -> ``anyOf``
...), as JSON Schema reads them (``float`` takes any number, ``bool`` is never a
number); a parameter with a default is optional; ``**kwargs`` takes unknown names.
Arguments that do not fit are :class:`InvalidArguments`, with a message that names the
argument.  A signature the wire cannot call (positional-only parameters, ``*args``, an
annotation with no JSON form) is a ``TypeError`` when declared.

This module imports nothing heavy: noded's function processes import it too.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rpc_client.errors import InvalidArguments

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
class Declaration:
    """A declared callable: its name on the wire, its parameters and its doc."""

    name: str
    func: Callable[..., Any]
    doc: str
    params: tuple[Param, ...]
    takes_any_keyword: bool

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of its arguments (an object)."""
        return {
            "type": "object",
            "properties": {p.name: p.schema for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": self.takes_any_keyword,
        }

    def check_args(self, args: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` unless ``args`` fit the parameters."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(args) - set(known))
        if unknown and not self.takes_any_keyword:
            raise InvalidArguments(f"{self.name}() got unknown arguments: {', '.join(unknown)}")
        missing = [p.name for p in self.params if p.required and p.name not in args]
        if missing:
            raise InvalidArguments(f"{self.name}() is missing arguments: {', '.join(missing)}")
        for name, value in args.items():
            if name in known and not matches_schema(value, known[name].schema):
                raise InvalidArguments(
                    f"{self.name}() argument {name!r} must be "
                    f"{describe_schema(known[name].schema)}, got {json_type_of(value)}"
                )


def declare(func: Callable[..., Any], name: str) -> Declaration:
    """The declaration of ``func``; raises ``TypeError`` for signatures the wire cannot
    call."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func)
    params: list[Param] = []
    takes_any_keyword = False
    for param in signature.parameters.values():
        if param.kind is param.VAR_KEYWORD:
            takes_any_keyword = True
            continue
        if param.kind in (param.POSITIONAL_ONLY, param.VAR_POSITIONAL):
            raise TypeError(f"{name!r}: parameter {param.name!r} must be nameable")
        schema = schema_of(hints.get(param.name, Any), f"{name}({param.name})")
        required = param.default is param.empty
        if not required and _is_json_value(param.default):
            schema = {**schema, "default": param.default}
        params.append(Param(param.name, schema, required))
    doc = inspect.getdoc(func) or ""
    return Declaration(name, func, doc, tuple(params), takes_any_keyword)


D = TypeVar("D", bound=Declaration)


class Declarations(Generic[D]):
    """Declarations by name, filled by a decorator as modules are imported; ``kind``
    (``function``, ``command``) names them in messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, D] = {}

    def add(self, declaration: D) -> None:
        """Add one; the same name for another callable is a ``ValueError`` (importing a
        module again is harmless)."""
        existing = self._by_name.get(declaration.name)
        if existing is not None and existing.func is not declaration.func:
            raise ValueError(
                f"{self.kind} name {declaration.name!r} registered twice: by "
                f"{_where(existing.func)} and by {_where(declaration.func)}"
            )
        self._by_name[declaration.name] = declaration

    def get(self, name: str) -> D | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)


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
    raise TypeError(f"{where}: annotation {annotation!r} has no JSON form (use int, float, "
                    "str, bool, list, dict, X | None, list[X], dict[str, X], or none)")  # fmt: skip


def matches_schema(value: Any, schema: dict[str, Any]) -> bool:
    """Check a JSON value against the small schema subset that :func:`schema_of` makes."""
    if "anyOf" in schema:
        return any(matches_schema(value, option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind is None:
        return True
    if json_type_of(value) != kind and not (kind == "number" and json_type_of(value) == "integer"):
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


def json_type_of(value: Any) -> str:
    """The JSON type of a decoded value, as JSON Schema names it."""
    if isinstance(value, bool):
        return "boolean"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _is_json_value(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _where(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"
