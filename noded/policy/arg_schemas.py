"""Argument schemas of a policy file (``args``), compiled once, at load.

A schema is JSON Schema draft 2020-12, narrowed so that every schema the loader accepts
is one the daemon honours at every call, and no call can make it do more than check:

- ``format`` is enforced, and only the formats in :data:`FORMATS` are accepted;
- ``$ref`` points inside the argument's own schema (``#/$defs/name``, ``#anchor``) and is
  resolved at load; nothing is ever retrieved, so a reference to a URL (or anything else
  outside the schema) is an error, as is a chain of references that loops without
  descending into the value;
- ``$id``, ``$dynamicRef`` and ``$dynamicAnchor`` (which move or re-bind what a reference
  means) and keywords draft 2020-12 does not know (a typo such as ``fromat`` would be
  silently ignored) are errors.

Each is a :class:`SchemaProblem` whose message names the keyword and the place.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable
from referencing.jsonschema import DRAFT202012

_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: keywords that apply another schema to the same value (a loop through them never ends)
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else")
_REFUSED = {
    "$id": "a schema here has no identity of its own: leave $id out",
    "$dynamicRef": "use $ref",
    "$dynamicAnchor": "use $anchor",
}
_ANNOTATIONS = {
    "$schema", "$anchor", "$defs", "$comment", "then", "else", "title", "description",
    "default", "examples", "deprecated", "readOnly", "writeOnly", "contentEncoding",
    "contentMediaType", "contentSchema",
}  # fmt: skip
_KEYWORDS = frozenset(Draft202012Validator.VALIDATORS) | _ANNOTATIONS
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
)
_UUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")


class SchemaProblem(ValueError):
    """Raised when an argument schema is one the daemon could not honour at every call."""


def is_hostname(value: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    labels = value.split(".")
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def is_ip(value: str, version: int) -> bool:
    """A textual IPv4 or IPv6 address (no zone index, no prefix length)."""
    try:
        return ipaddress.ip_address(value).version == version and "%" not in value
    except ValueError:
        return False


def is_uri(value: str) -> bool:
    """An absolute URI (RFC 3986): a scheme, then only URI characters and %-escapes."""
    return _URI.fullmatch(value) is not None


def is_email(value: str) -> bool:
    """``local@host``: an unquoted RFC 5321 local part and a host name."""
    local, at, host = value.rpartition("@")
    return bool(at) and _EMAIL_LOCAL.fullmatch(local) is not None and is_hostname(host)


def is_uuid(value: str) -> bool:
    """A UUID in its hyphenated form (RFC 4122)."""
    return _UUID.fullmatch(value) is not None


def is_date(value: str) -> bool:
    """A full date, ``YYYY-MM-DD`` (RFC 3339)."""
    try:
        return _DATE.fullmatch(value) is not None and bool(datetime.date.fromisoformat(value))
    except ValueError:
        return False


def _format_checker() -> FormatChecker:
    checker = FormatChecker(())
    checks: dict[str, Any] = {
        "ipv4": lambda v: is_ip(v, 4),
        "ipv6": lambda v: is_ip(v, 6),
        "hostname": is_hostname,
        "uri": is_uri,
        "email": is_email,
        "uuid": is_uuid,
        "date": is_date,
    }
    for name, check in checks.items():
        # a format constrains strings only (JSON Schema): give ``type`` to exclude the rest
        checker.checks(name)(lambda v, check=check: not isinstance(v, str) or check(v))
    return checker


FORMAT_CHECKER = _format_checker()
#: the formats an argument schema may name; any other is an error at load
FORMATS = tuple(sorted(FORMAT_CHECKER.checkers))


def compile_schema(schema: Any) -> Draft202012Validator:
    """A validator for ``schema``; raises :class:`SchemaProblem` saying what is wrong."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaProblem(f"is not a JSON Schema: {exc.message}") from None
    for subschema in _subschemas(schema):
        _check_keywords(subschema)
    resource = DRAFT202012.create_resource(schema)
    registry: Registry[Any] = Registry(retrieve=_never_retrieve)  # type: ignore[call-arg]
    _check_references(schema, resource, registry)
    return Draft202012Validator(schema, registry=registry, format_checker=FORMAT_CHECKER)


def _never_retrieve(uri: str) -> Resource[Any]:
    raise NoSuchResource(uri)


def _subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(schema, dict):
        return
    yield schema
    for sub in DRAFT202012.subresources_of(schema):
        yield from _subschemas(sub)


def _check_keywords(schema: dict[str, Any]) -> None:
    for keyword, why in _REFUSED.items():
        if keyword in schema:
            raise SchemaProblem(f"has {keyword}, which is not allowed: {why}")
    unknown = sorted(set(schema) - _KEYWORDS)
    if unknown:
        raise SchemaProblem(f"has unknown keywords {unknown} (a typo would be ignored)")
    if schema.get("$schema", _DIALECT) != _DIALECT:
        raise SchemaProblem(f"has a $schema other than {_DIALECT}, the dialect used")
    fmt = schema.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise SchemaProblem(
            f"has format {fmt!r}, which is not checked; known: {', '.join(FORMATS)}"
        )
    ref = schema.get("$ref")
    if ref is not None and not ref.startswith("#"):
        raise SchemaProblem(
            f"has $ref {ref!r}, which points outside the schema: only #/... and #anchor "
            "within the argument's own schema are resolved; nothing is fetched"
        )


def _check_references(schema: Any, resource: Resource[Any], registry: Registry[Any]) -> None:
    """Resolve every ``$ref`` now, and refuse a loop of them that never reads the value."""
    resolver = registry.resolver_with_root(resource)
    targets: dict[int, dict[str, Any]] = {}
    for subschema in _subschemas(schema):
        ref = subschema.get("$ref")
        if ref is None:
            continue
        try:
            target = resolver.lookup(ref).contents
        except Unresolvable:
            raise SchemaProblem(f"has $ref {ref!r}, which resolves to nothing in it") from None
        if isinstance(target, dict):
            targets[id(subschema)] = target
    _refuse_loops(schema, targets)


def _refuse_loops(schema: Any, targets: dict[int, dict[str, Any]]) -> None:
    done: set[int] = set()

    def visit(node: Any, path: tuple[int, ...]) -> None:
        if not isinstance(node, dict) or id(node) in done:
            return
        if id(node) in path:
            ref = node.get("$ref", "#")
            raise SchemaProblem(f"has $ref {ref!r}, which loops back without reading the value")
        for child in _in_place(node, targets):
            visit(child, (*path, id(node)))
        done.add(id(node))

    for subschema in _subschemas(schema):
        visit(subschema, ())


def _in_place(node: dict[str, Any], targets: dict[int, dict[str, Any]]) -> Iterator[Any]:
    """The schemas applied to the same value as ``node`` (not to a part of it)."""
    for keyword in _IN_PLACE_LISTS:
        yield from node.get(keyword, ())
    for keyword in _IN_PLACE_ONE:
        if keyword in node:
            yield node[keyword]
    yield from node.get("dependentSchemas", {}).values()
    if id(node) in targets:
        yield targets[id(node)]
