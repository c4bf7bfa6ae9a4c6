"""At the door: who is asking (:class:`Caller`), whether the policy lets them, and the
audit record of every refusal.

Without a policy everything is allowed, as before policies; without a policy and an
audit log nobody is even asked their name (it costs a certificate parse per client).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from noded.calls.audit import AuditLog
from noded.calls.table import FunctionCall
from noded.config import is_loopback
from noded.metrics import Metrics
from noded.policy.rules import (
    ANONYMOUS,
    LOCAL,
    REASON_CHARS,
    Caller,
    Policy,
    bounded,
    is_certificate_name,
)
from noded.registry import FunctionSpec
from rpc_client import protocol, tls
from rpc_client.errors import Forbidden
from rpc_client.logs import RateLimit, event
from rpc_client.serving.listener import peer_text

log = logging.getLogger("noded.policy")

#: at most one policy.denied line per this many seconds; the rest are counted
_LOG_EVERY_S = 1.0


class Guard:
    """The policy in force (it may be swapped by a reload) and the audit log."""

    def __init__(self, policy: Policy | None, audit: AuditLog | None, metrics: Metrics) -> None:
        self.policy = policy
        self.audit = audit
        self._metrics = metrics
        self._denials = RateLimit(_LOG_EVERY_S)

    def caller(self, request: web.Request) -> Caller | None:
        """Who sent ``request``, if anyone needs to know."""
        if self.policy is None and self.audit is None:
            return None
        return caller_of(request)

    # --- the checks: each returns, or raises Forbidden (logged and audited) ---------------

    def check_procedure(self, caller: Caller | None, procedure: str) -> None:
        if self.policy is None or caller is None:
            return
        if not self.policy.allows_procedure(caller, procedure):
            raise self.deny(caller, procedure, f"may not call {procedure}")

    def check_function(self, caller: Caller | None, request: protocol.StartFunctionRequest) -> None:
        """Before the function is even looked up: a client learns nothing of the
        functions it may not call, not even whether they exist."""
        if self.policy is None or caller is None:
            return
        if not self.policy.allows_function(caller, request.fn_name):
            raise self.deny(
                caller, protocol.START_FUNCTION, f"may not run {protocol.shown(request.fn_name)}",
                request=request,
            )  # fmt: skip

    def check_args(
        self, caller: Caller | None, request: protocol.StartFunctionRequest, spec: FunctionSpec
    ) -> None:
        """After the function's own check of its arguments."""
        if self.policy is None or caller is None:
            return
        defaults = {p.name: p.schema["default"] for p in spec.params if "default" in p.schema}
        problem = self.policy.args_problem(caller, spec.name, request.fn_args, defaults)
        if problem is not None:
            what = f"may not run {spec.name} with these arguments: {problem}"
            raise self.deny(caller, protocol.START_FUNCTION, what, request=request)

    def check_call(self, caller: Caller | None, call: FunctionCall, procedure: str) -> None:
        """A call started by another client is not this one's to wait for or abort,
        unless a rule says ``others_calls``."""
        if self.policy is None or caller is None or call.owner == caller.name:
            return
        if not self.policy.others_calls(caller):
            raise self.deny(
                caller, procedure, f"may not see call {call.fnc_id}, which another client started",
                fnc_id=call.fnc_id,
            )  # fmt: skip

    def owner_filter(self, caller: Caller | None) -> str | None:
        """Whose calls ListFunctions shows ``caller`` (None: everybody's)."""
        if self.policy is None or caller is None or self.policy.others_calls(caller):
            return None
        return caller.name

    def callable_functions(
        self, caller: Caller | None, functions: dict[str, Any]
    ) -> dict[str, Any]:
        """DescribeFunctions (and /openapi.json) show only what the client may run."""
        if self.policy is None or caller is None:
            return functions
        policy = self.policy
        return {name: entry for name, entry in functions.items()
                if policy.allows_function(caller, name)}  # fmt: skip

    def metrics_filter(self, caller: Caller | None) -> Callable[[str], bool] | None:
        """/metrics shows per-function series only of the functions ``caller`` may run or
        that a rule granting it /metrics names (None: all of them)."""
        if self.policy is None or caller is None:
            return None
        return functools.partial(self.policy.shows_metrics_of, caller)

    # --- refusing --------------------------------------------------------------------

    def deny(
        self,
        caller: Caller,
        procedure: str,
        what: str,
        *,
        request: protocol.StartFunctionRequest | None = None,
        fnc_id: str | None = None,
    ) -> Forbidden:
        """The 403 to raise, after the log line (rate-limited), the metric and the audit
        record."""
        source = self.policy.source if self.policy is not None else "?"
        what = bounded(what, REASON_CHARS)  # logged and audited: never megabytes
        message = f"client {caller.name} ({caller.peer}) {what} (policy {source})"
        self._metrics.denials.labels(procedure).inc()
        if self._denials.allow():
            event(log, "policy.denied", logging.WARNING, client=caller.name, peer=caller.peer,
                  procedure=procedure, fnc_id=fnc_id, reason=what,
                  suppressed=self._denials.take_suppressed())  # fmt: skip
        if self.audit is not None:
            self.audit.try_append("deny", self.audit.fields(
                caller, procedure,
                # a name that is no function's may be megabytes: never a whole one
                fn_name=bounded(request.fn_name, REASON_CHARS) if request else None,
                fn_args=request.fn_args if request else None,
                request_id=request.request_id if request else None,
                fnc_id=fnc_id, outcome="Forbidden", reason=what,
            ))  # fmt: skip
        return Forbidden(message)


def caller_of(request: web.Request) -> Caller:
    """The identity of a request's client: its certificate's common name (or
    ``sha256:<fingerprint>``, see :func:`certificate_identity`), else ``local`` for plain
    HTTP from a loopback address, else ``anonymous``."""
    transport = request.transport
    if transport is None:  # the client has gone already
        return Caller(ANONYMOUS, "?")
    peername = transport.get_extra_info("peername")
    peer = peer_text(peername)
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der:
        name, fingerprint = certificate_identity(der)
        return Caller(name, peer, fingerprint)
    host = peername[0] if peername else ""
    return Caller(LOCAL if is_loopback(host) else ANONYMOUS, peer)


@functools.lru_cache(maxsize=1024)
def certificate_identity(der: bytes) -> tuple[str, str]:
    """(name, fingerprint) of a client certificate, parsed once per certificate.

    The name is its common name, unless it has none or one that cannot stand for a
    client (``local``, ``sha256:<another certificate's fingerprint>``, ...): then it is
    ``sha256:<its own fingerprint>``, so that no certificate takes another's name or
    calls by what it writes in its subject."""
    fingerprint = tls.fingerprint(der)
    name = tls.common_name(der)
    if name is None or not is_certificate_name(name):
        name = f"sha256:{fingerprint}"
    return name, fingerprint
