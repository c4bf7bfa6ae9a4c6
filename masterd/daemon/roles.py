"""Who may call what, by the role in the client's certificate (ganeti-masterd with TLS).

A **node** certificate may call the node procedures (:data:`NODE_PROCEDURES`), and only
as the node its common name names (the handlers check that with :func:`check_is`); an
**operator** certificate (``rpc-cli certs issue ... --master``) every other procedure
(ListNodes, WaitForEvents, the jobs') and ``GET /metrics`` and ``/openapi.json``; any
other certificate (masterd's own, one without a role, made before 1.2) nothing: ``403
Forbidden``.  Without TLS there is no caller (None) and no check:
whoever reaches the loopback port may call everything.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from rpc_client import master_protocol as wire
from rpc_client import tls
from rpc_client.errors import Forbidden
from rpc_client.logs import RateLimit, event

log = logging.getLogger("masterd.roles")

#: at most one role.refused line per this many seconds; the rest are counted
_LOG_EVERY_S = 1.0
_refusals = RateLimit(_LOG_EVERY_S)

NODE_PROCEDURES: Final = frozenset({wire.REGISTER, wire.HEARTBEAT, wire.REPORT, wire.CALL_MASTER})
_REISSUE = "rpc-cli certs issue CA_DIR NAME --node --force (see doc/security.md)"


@dataclass(frozen=True)
class Caller:
    """A client certificate's name (common name) and role (None: it has none)."""

    name: str
    role: str | None


def caller_of(request: web.Request) -> Caller | None:
    """The caller of a request made over TLS; None without TLS."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:  # not reached: the handshake requires a certificate
        raise Forbidden("a client certificate signed by the cluster CA is required")
    return identity(der)


@functools.lru_cache(maxsize=4096)
def identity(der: bytes) -> Caller:
    """A certificate's caller, parsed once per certificate."""
    name, role = tls.identity(der)
    return Caller(name or "", role)


def check_allowed(caller: Caller | None, what: str) -> None:
    """Raise ``Forbidden`` unless the caller's role may call ``what`` (a procedure, or
    the path of a GET document)."""
    if caller is None:
        return
    for_nodes = what in NODE_PROCEDURES
    if caller.role == (tls.NODE_ROLE if for_nodes else tls.OPERATOR_ROLE):
        return
    if caller.role is None:
        raise Forbidden(
            f"the certificate of {caller.name!r} names no role (it was issued before "
            f"ganeti-masterd 1.2, or not by rpc-cli): re-issue it, for a node with {_REISSUE}"
        )
    raise Forbidden(
        f"{what} is for {'node' if for_nodes else 'operator'} certificates; "
        f"{caller.name!r} has a {caller.role} certificate"
    )


def check_is(caller: Caller | None, name: str) -> None:
    """Under TLS a node may act only as itself (the certificate's common name)."""
    if caller is not None and caller.name != name:
        raise Forbidden(
            f"this certificate is for node {caller.name!r}; it may not act as node {name!r} "
            f"(start ganeti-noded without --name, or with --name {caller.name})"
        )


def log_refused(request: web.Request, exc: Forbidden) -> None:
    """``role.refused``: who (the certificate's name and role, the peer) was refused
    what (the procedure, or the path of a GET document), and why; rate-limited."""
    if not _refusals.allow():
        return
    caller = caller_of(request)
    what = request.match_info.get("procedure") or request.path
    event(log, "role.refused", logging.WARNING, client=caller.name if caller else None,
          role=caller.role if caller else None, peer=request.remote, procedure=what[:200],
          reason=exc.message, suppressed=_refusals.take_suppressed())  # fmt: skip
