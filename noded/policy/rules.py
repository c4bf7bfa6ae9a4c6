"""Who may run what: the rules of ``--policy FILE`` (doc/security.md).

Once a policy is given, everything it does not allow is denied.  A rule names clients
(certificate common names, ``sha256:<hex fingerprint>``, ``*`` for any client the CA
accepts, ``local`` for plain HTTP on loopback), the procedures (by default the call
procedures, :data:`CALL_PROCEDURES`: never ReloadFunctions or /metrics unless named) and
functions they may call, JSON Schemas their arguments must meet, and whether they may
see other clients' calls.  A request is allowed if one rule that names its client allows
all of it.  A ``sha256:`` client is a certificate's fingerprint, never a common name.

Loading checks the whole file: unknown keys, an empty ``clients``, an unknown procedure
or a schema that is not one are errors (:class:`PolicyError`); a function pattern that
matches no function is a warning, since functions come and go with reloads.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noded.registry import Registry
from rpc_client import protocol

PROCEDURES = (
    protocol.START_FUNCTION, protocol.WAIT_FOR_FUNCTION, protocol.ABORT_FUNCTION,
    protocol.LIST_FUNCTIONS, protocol.IDENTIFY, protocol.DESCRIBE_FUNCTIONS,
    protocol.RELOAD_FUNCTIONS, "GET /metrics", "GET /openapi.json",
)  # fmt: skip
#: what a rule without ``procedures`` grants: calling functions and seeing one's calls,
#: never ReloadFunctions or /metrics, which are an operator's (doc/security.md)
CALL_PROCEDURES = (
    protocol.START_FUNCTION, protocol.WAIT_FOR_FUNCTION, protocol.ABORT_FUNCTION,
    protocol.LIST_FUNCTIONS, protocol.IDENTIFY, protocol.DESCRIBE_FUNCTIONS, "GET /openapi.json",
)  # fmt: skip
METRICS = "GET /metrics"
ANY_CERTIFIED = "*"
LOCAL = "local"
#: a plain-HTTP client on a non-loopback address (--insecure)
ANONYMOUS = "anonymous"
#: names no certificate's common name stands for
_RESERVED = frozenset({ANY_CERTIFIED, LOCAL, ANONYMOUS})
_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")
_RULE_KEYS = {"clients", "functions", "procedures", "others_calls", "args"}
#: the longest refusal reason logged or audited, and the longest part of it that says
#: what an argument's schema refused
REASON_CHARS = 200
_SCHEMA_SAYS_CHARS = 120
#: jsonschema keywords whose message names no part of the value
_MESSAGE_WITHOUT_VALUE = frozenset({"const", "required", "dependentRequired"})
#: ... and those whose message is the value's repr followed by words and schema values
_MESSAGE_AFTER_VALUE = frozenset({
    "type", "enum", "format", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "anyOf", "oneOf", "not",
})  # fmt: skip


class PolicyError(ValueError):
    """A policy file that cannot be used, with what is wrong in it."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request: ``name`` (a certificate's common name, ``sha256:<hex>`` of its
    fingerprint for one without a usable name, ``local`` or ``anonymous``), its
    certificate's fingerprint, its address."""

    name: str
    peer: str
    fingerprint: str | None = None

    @property
    def certified(self) -> bool:
        return self.fingerprint is not None


@dataclass(frozen=True, eq=False)
class Rule:
    number: int
    clients: frozenset[str]
    functions: tuple[str, ...] = ("*",)
    procedures: frozenset[str] = frozenset(CALL_PROCEDURES)
    others_calls: bool = False
    #: argument name -> a compiled JSON Schema validator
    args: dict[str, Any] = field(default_factory=dict)

    def names(self, caller: Caller) -> bool:
        if not caller.certified:
            return caller.name in self.clients  # local or anonymous
        # a fingerprint entry matches the certificate's fingerprint, never a common name
        # that reads like one
        return (
            ANY_CERTIFIED in self.clients
            or f"sha256:{caller.fingerprint}" in self.clients
            or (is_certificate_name(caller.name) and caller.name in self.clients)
        )

    def covers(self, fn_name: str) -> bool:
        return any(fnmatch.fnmatchcase(fn_name, pattern) for pattern in self.functions)


@dataclass
class Policy:
    """The rules in force, and where they came from."""

    rules: tuple[Rule, ...]
    source: str
    sha256: str = ""
    warnings: list[str] = field(default_factory=list)
    _by_caller: dict[tuple[str, str | None], tuple[Rule, ...]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def allow_clients(cls, clients: Iterable[str]) -> Policy:
        """``--tls-allowed-clients``: these clients may do everything, as before policies."""
        names = frozenset(c if not _is_bare_hex(c) else f"sha256:{c}" for c in clients)
        rule = Rule(1, names, procedures=frozenset(PROCEDURES), others_calls=True)
        return cls((rule,), "--tls-allowed-clients")

    def rules_for(self, caller: Caller) -> tuple[Rule, ...]:
        key = (caller.name, caller.fingerprint)
        rules = self._by_caller.get(key)
        if rules is None:
            if len(self._by_caller) > 4096:
                self._by_caller.clear()
            rules = self._by_caller[key] = tuple(r for r in self.rules if r.names(caller))
        return rules

    def allows_procedure(self, caller: Caller, procedure: str) -> bool:
        return any(procedure in rule.procedures for rule in self.rules_for(caller))

    def allows_function(self, caller: Caller, fn_name: str) -> bool:
        return any(rule.covers(fn_name) for rule in self._starting(caller))

    def args_problem(
        self, caller: Caller, fn_name: str, fn_args: dict[str, Any], defaults: dict[str, Any]
    ) -> str | None:
        """None if a rule allows these arguments, else what the closest rule refuses."""
        problems = []
        for rule in self._starting(caller):
            if rule.covers(fn_name):
                problem = _args_problem(rule, fn_args, defaults)
                if problem is None:
                    return None
                problems.append(problem)
        return problems[0] if problems else f"no rule allows {fn_name}"

    def shows_metrics_of(self, caller: Caller, fn_name: str) -> bool:
        """Whether /metrics shows ``caller`` the series of ``fn_name``: a function it may
        run, or one that a rule granting it /metrics names in its ``functions``."""
        return any(
            rule.covers(fn_name)
            and (protocol.START_FUNCTION in rule.procedures or METRICS in rule.procedures)
            for rule in self.rules_for(caller)
        )

    def others_calls(self, caller: Caller) -> bool:
        return any(rule.others_calls for rule in self.rules_for(caller))

    def _starting(self, caller: Caller) -> Iterable[Rule]:
        return (r for r in self.rules_for(caller) if protocol.START_FUNCTION in r.procedures)


def _args_problem(rule: Rule, fn_args: dict[str, Any], defaults: dict[str, Any]) -> str | None:
    for name, validator in rule.args.items():
        if name in fn_args:
            value = fn_args[name]
        elif name in defaults:
            value = defaults[name]
        else:
            return f"argument {name!r} must be given (rule {rule.number})"
        try:
            error = next(iter(validator.iter_errors(value)), None)
        except RecursionError:  # a value nested deeper than a recursive schema can follow
            return f"argument {name!r} is nested too deeply to check (rule {rule.number})"
        if error is not None:
            return f"argument {name!r}: {_without_value(error)} (rule {rule.number})"
    return None


def _without_value(error: Any) -> str:
    """What a schema refused, without the value it refused: that is logged and audited,
    and an argument may be a secret (or megabytes).  jsonschema's message of these
    keywords is the value's repr, then words and the schema's own values."""
    if error.validator in _MESSAGE_WITHOUT_VALUE:
        text = str(error.message)
    elif error.validator in _MESSAGE_AFTER_VALUE and (
        str(error.message).startswith(shown := repr(error.instance))
    ):
        text = "the value" + str(error.message)[len(shown) :]
    else:
        text = f"the value fails the schema's {error.validator!r}"
    if error.absolute_path:
        text = f"inside it, {text}"
    return bounded(text, _SCHEMA_SAYS_CHARS)


def bounded(text: str, limit: int = 200) -> str:
    """``text``, cut to ``limit`` characters (the last three then ``...``)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_policy(path: Path, registry: Registry) -> Policy:
    """Read and check a policy file; raises :class:`PolicyError` saying what is wrong."""
    try:
        raw = path.read_bytes()
        document = tomllib.loads(raw.decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy {path}: {exc}") from exc
    unknown = sorted(set(document) - {"allow"})
    if unknown:
        raise PolicyError(f"policy {path}: unknown keys {unknown}; a policy has [[allow]] rules")
    tables = document.get("allow", [])
    if not isinstance(tables, list):
        raise PolicyError(f"policy {path}: 'allow' must be an array of tables ([[allow]])")
    policy = Policy(tuple(_rule(n, t, path) for n, t in enumerate(tables, 1)), str(path))
    policy.sha256 = hashlib.sha256(raw).hexdigest()
    policy.warnings = list(_warnings(policy, registry))
    return policy


def _rule(number: int, table: Any, path: Path) -> Rule:
    where = f"policy {path}, rule {number}"
    if not isinstance(table, dict):
        raise PolicyError(f"{where}: not a table")
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}; known: {sorted(_RULE_KEYS)}")
    clients = _strings(table, "clients", where, required=True)
    for client in clients:
        if _looks_like_fingerprint(client) and not _FINGERPRINT_RE.fullmatch(client):
            raise PolicyError(f"{where}: {client!r} is not sha256: and 64 lowercase hex digits")
        if _is_bare_hex(client):
            raise PolicyError(f"{where}: write the fingerprint {client[:12]}... as sha256:<hex>")
    procedures = _strings(table, "procedures", where) or list(CALL_PROCEDURES)
    wrong = sorted(set(procedures) - set(PROCEDURES) - {"*"})
    if wrong:
        raise PolicyError(f"{where}: unknown procedures {wrong}; known: {', '.join(PROCEDURES)}")
    others = table.get("others_calls", False)
    if not isinstance(others, bool):
        raise PolicyError(f"{where}: others_calls must be true or false")
    return Rule(
        number,
        frozenset(clients),
        tuple(_strings(table, "functions", where) or ["*"]),
        frozenset(PROCEDURES if "*" in procedures else procedures),
        others,
        _validators(table.get("args", {}), where),
    )


def _strings(table: dict[str, Any], key: str, where: str, *, required: bool = False) -> list[str]:
    values = table.get(key)
    if values is None and not required:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where}: {key} must be a list of non-empty strings")
    if not values:
        raise PolicyError(f"{where}: {key} is empty: the rule would allow nothing")
    return values


def _validators(args: Any, where: str) -> dict[str, Any]:
    from noded.policy import arg_schemas  # only a daemon with a policy needs jsonschema

    if not isinstance(args, dict):
        raise PolicyError(f"{where}: args must be a table of argument name = JSON Schema")
    validators = {}
    for name, schema in args.items():
        try:
            validators[name] = arg_schemas.compile_schema(schema)
        except arg_schemas.SchemaProblem as exc:
            raise PolicyError(f"{where}: args.{name} {exc}") from None
    return validators


def _warnings(policy: Policy, registry: Registry) -> Iterable[str]:
    names = registry.names()
    if not policy.rules:
        yield "the policy has no rule: every request is denied"
    for rule in policy.rules:
        for pattern in rule.functions:
            if not fnmatch.filter(names, pattern):
                yield f"rule {rule.number}: functions pattern {pattern!r} matches no function"
        covered = [registry.get(name) for name in names if rule.covers(name)]
        params = {p.name for spec in covered if spec for p in spec.params}
        for arg in sorted(set(rule.args) - params):
            yield f"rule {rule.number}: args.{arg} is no parameter of the functions it names"


def plain_http_warning(policy: Policy) -> str | None:
    """What to say of ``policy`` on a daemon without TLS, if its rules name no client a
    plain-HTTP request can be (``local``, ``anonymous``): it would refuse everything."""
    if not policy.rules or any(rule.clients & {LOCAL, ANONYMOUS} for rule in policy.rules):
        return None  # no rule at all is warned about already
    return (
        "the policy's rules name only certificate clients, but this daemon has no TLS: "
        "every request will be refused (403 Forbidden). Give --tls-cert, --tls-key and "
        "--tls-ca, or name 'local' (plain HTTP on loopback) or 'anonymous' (--insecure) "
        "in a rule's clients"
    )


def is_certificate_name(common_name: str) -> bool:
    """Whether a certificate's common name may stand for its client: not one of the
    names a rule gives another meaning (``*``, ``local``, ``anonymous``), and not one that
    reads as a fingerprint (``sha256:...``), which would pass for another certificate."""
    return common_name not in _RESERVED and not _looks_like_fingerprint(common_name)


def _looks_like_fingerprint(text: str) -> bool:
    return text[:7].lower() == "sha256:"


def _is_bare_hex(client: str) -> bool:
    return len(client) == 64 and all(c in "0123456789abcdef" for c in client)
