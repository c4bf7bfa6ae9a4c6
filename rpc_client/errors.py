"""The one exception tree of noded, shared by the daemon and its clients.

::

    RPCError
    ├── TransportError              the node could not be asked or did not answer properly
    │   ├── NodeUnreachable         refused, unresolvable, no route: nothing was sent
    │   ├── ConnectionLost          reset or closed after the request went out: it may have run
    │   ├── TLSError                the TLS handshake failed: a certificate did not verify
    │   ├── NodeTimeout             no answer within the request's own timeout
    │   └── ProtocolError           an answer that is not the contract's
    ├── WrongNode                   the address answers with another node's uuid
    ├── UnknownNode                 no node of that name or uuid in the cluster
    ├── RemoteError                 the node answered with a request error (non-200)
    │   ├── BadRequest              400
    │   ├── InvalidArguments        400
    │   ├── UnknownFunction         404
    │   ├── UnknownFunctionCall     404
    │   │   └── NodeRestarted       the daemon restarted and the call is gone
    │   ├── UnknownProcedure        404
    │   ├── MethodNotAllowed        405
    │   ├── RequestIdConflict       409
    │   ├── Forbidden               403 (the client may not do this)
    │   ├── RequestTooLarge         413
    │   ├── InsufficientStorage     507 (the node cannot write its state: disk full, I/O error)
    │   ├── NodeBusy                503 "Busy"
    │   ├── NodeShuttingDown        503 "ShuttingDown"
    │   │   (1.2, ganeti-masterd:)
    │   ├── NodeConflict            409 another live node holds that name
    │   ├── NotRegistered           409 the master does not know that node uuid
    │   ├── UnknownCommand          404 no master command of that name
    │   ├── UnknownJob              404 no job of that id
    │   ├── CommandTimeout          504 a master command outlived its timeout
    │   └── StoreUnavailable        503 the master's store cannot be reached or written
    ├── FunctionFailed              the call finished with an error (raised, died, aborted, ...)
    │   (or a class registered for the remote type, see register_function_error)
    ├── CallTimeout                 the caller's deadline passed while the function still ran
    └── Skipped                     a fan-out never started this node (canary, failure budget)

The daemon raises the ``RemoteError`` classes itself; one middleware turns them into the
wire's ``{"error": {"type", "message"}}`` body with the class's status.  The client turns
such a body back into the same class in :func:`remote_error_from_wire`, and a failed
call's error into :class:`FunctionFailed` (or a registered class) in
:func:`function_error`: the two places where remote error types map to local classes.
Misuse of the library raises ``ValueError`` or ``TypeError``, outside this tree.
"""

from __future__ import annotations

from typing import Any, ClassVar


class RPCError(Exception):
    """Base of every error a noded call can raise."""

    #: what ``node`` names: ``"node"`` (a ganeti-noded), or ``"master"`` for an error
    #: of a ganeti-masterd's client (set by :func:`from_master`); shown by ``str()``
    daemon: str = "node"

    def __init__(self, message: str, *, node: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node

    def __str__(self) -> str:
        return f"{self.message} ({self.daemon} {self.node})" if self.node else self.message


class TransportError(RPCError):
    """Raised when the node could not be asked or gave no usable answer."""


class NodeUnreachable(TransportError):
    """Raised when the connection is refused, there is no route, or the name does not
    resolve: the request was never sent."""


class ConnectionLost(TransportError):
    """Raised when the connection broke after the request was sent: it may have run.

    A sibling of :class:`NodeUnreachable`, not a kind of it: a request that never left
    is safe to report at once, one that may have run is retried with its request_id.
    """


class TLSError(TransportError):
    """Raised when the TLS handshake fails: a certificate did not verify, either way."""


class NodeTimeout(TransportError):
    """Raised when the node does not answer a request within its timeout."""


class ProtocolError(TransportError):
    """Raised when the node's answer is not what the wire contract says."""


class RemoteError(RPCError):
    """Raised when the node answered a request with a non-200 error body."""

    wire_type: ClassVar[str] = "RemoteError"
    status: ClassVar[int] = 500


class BadRequest(RemoteError):
    """Raised when the request body or one of its fields is malformed."""

    wire_type = "BadRequest"
    status = 400


class InvalidArguments(RemoteError):
    """Raised when fn_args do not fit the function's declared parameters."""

    wire_type = "InvalidArguments"
    status = 400


class UnknownFunction(RemoteError):
    """Raised when fn_name is not registered on the node."""

    wire_type = "UnknownFunction"
    status = 404


class UnknownFunctionCall(RemoteError):
    """Raised when the node does not know the fnc_id (never started, expired, or restarted)."""

    wire_type = "UnknownFunctionCall"
    status = 404


class NodeRestarted(UnknownFunctionCall):
    """Raised when the node's daemon restarted since the call started: the call is gone."""


class UnknownProcedure(RemoteError):
    """Raised when the procedure path does not exist."""

    wire_type = "UnknownProcedure"
    status = 404


class MethodNotAllowed(RemoteError):
    """Raised when a procedure is asked with a method other than PUT."""

    wire_type = "MethodNotAllowed"
    status = 405


class RequestIdConflict(RemoteError):
    """Raised when a request_id is reused with a different fn_name or fn_args."""

    wire_type = "RequestIdConflict"
    status = 409


class Forbidden(RemoteError):
    """Raised when the node's --tls-allowed-clients does not name this client's certificate."""

    wire_type = "Forbidden"
    status = 403


class RequestTooLarge(RemoteError):
    """Raised when the request body is over the daemon's limit."""

    wire_type = "RequestTooLarge"
    status = 413


class InsufficientStorage(RemoteError):
    """Raised when the node cannot write its state directory (disk full, I/O error,
    read-only): the call was refused and nothing runs."""

    wire_type = "InsufficientStorage"
    status = 507


class NodeBusy(RemoteError):
    """Raised when the node runs its maximum of function processes; retry after a while."""

    wire_type = "Busy"
    status = 503

    def __init__(
        self, message: str, *, node: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, node=node)
        self.retry_after_s = retry_after_s


class NodeShuttingDown(RemoteError):
    """Raised when the node is stopping and takes no new calls."""

    wire_type = "ShuttingDown"
    status = 503


class NodeConflict(RemoteError):
    """Raised when a node registers under a name another live node (another uuid) holds."""

    wire_type = "NodeConflict"
    status = 409


class NotRegistered(RemoteError):
    """Raised when a node reports to a master that does not know its uuid: register first."""

    wire_type = "NotRegistered"
    status = 409


class UnknownCommand(RemoteError):
    """Raised when CallMaster names a command the master does not have."""

    wire_type = "UnknownCommand"
    status = 404


class UnknownJob(RemoteError):
    """Raised when a job_id is not one the master knows."""

    wire_type = "UnknownJob"
    status = 404


class CommandTimeout(RemoteError):
    """Raised when a master command outlived the request's timeout."""

    wire_type = "CommandTimeout"
    status = 504


class StoreUnavailable(RemoteError):
    """Raised when the master cannot reach or write its store; retry after a while
    (a node tries its next master)."""

    wire_type = "StoreUnavailable"
    status = 503

    def __init__(
        self, message: str, *, node: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, node=node)
        self.retry_after_s = retry_after_s


class WrongNode(RPCError):
    """Raised when the node at an address is not the one expected (its uuid differs)."""


class UnknownNode(RPCError, LookupError):
    """Raised when a cluster has no node of the given name or uuid."""


class FunctionFailed(RPCError):
    """Raised when a call finished with an error: the function raised, died or was aborted.

    ``message`` is the node's own (``"x"`` for ``raise DiskFull("x")``), ``type`` the
    error's type; ``str()`` shows both: ``DiskFull: x (node n1)``."""

    def __init__(
        self, error: dict[str, Any], *, fnc_id: str | None = None, node: str | None = None
    ) -> None:
        self.error = error
        self.type: str = str(error.get("type", "Error"))
        self.traceback: str | None = error.get("traceback")
        self.fnc_id = fnc_id
        super().__init__(str(error.get("message", "")), node=node)

    def __str__(self) -> str:
        said = f"{self.type}: {self.message}"
        return f"{said} ({self.daemon} {self.node})" if self.node else said


class CallTimeout(RPCError):
    """Raised when the caller's deadline passed and the function is still running."""

    def __init__(self, message: str, *, fnc_id: str | None, node: str | None = None) -> None:
        super().__init__(message, node=node)
        self.fnc_id = fnc_id
        #: with abort_on_timeout: True once the node confirmed the abort
        self.aborted = False


class Skipped(RPCError):
    """A node of a fan-out that was never started: its canary failed, or more nodes
    failed than the fan-out's failure budget allows (``max_failures``)."""


_FUNCTION_ERRORS: dict[str, type[Exception]] = {}


def register_function_error(type_name: str, cls: type[Exception]) -> None:
    """Raise ``cls`` instead of :class:`FunctionFailed` for calls failing with ``type_name``.

    The instance is made as ``cls(message)``, gets the attributes of FunctionFailed
    (``type``, ``message``, ``traceback``, ``fnc_id``, ``node``, ``error``), and is raised
    from the FunctionFailed it stands for.
    """
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        raise TypeError(f"{cls!r} is not an exception class")
    _FUNCTION_ERRORS[type_name] = cls


def unregister_function_error(type_name: str) -> None:
    """Forget what :func:`register_function_error` said for ``type_name``."""
    _FUNCTION_ERRORS.pop(type_name, None)


def function_error(error: dict[str, Any], *, fnc_id: str | None, node: str | None) -> Exception:
    """The exception a caller gets for a call that finished with ``error``."""
    failed = FunctionFailed(error, fnc_id=fnc_id, node=node)
    cls = _FUNCTION_ERRORS.get(failed.type)
    if cls is None:
        return failed
    exc = cls(str(error.get("message", "")))
    for name in ("type", "traceback", "fnc_id", "node", "error"):
        setattr(exc, name, getattr(failed, name))
    exc.message = str(error.get("message", ""))  # type: ignore[attr-defined]
    exc.__cause__ = failed
    return exc


REMOTE_ERRORS: dict[str, type[RemoteError]] = {
    cls.wire_type: cls
    for cls in (
        BadRequest,
        InvalidArguments,
        UnknownFunction,
        UnknownFunctionCall,
        UnknownProcedure,
        MethodNotAllowed,
        RequestIdConflict,
        Forbidden,
        RequestTooLarge,
        InsufficientStorage,
        NodeBusy,
        NodeShuttingDown,
        NodeConflict,
        NotRegistered,
        UnknownCommand,
        UnknownJob,
        CommandTimeout,
        StoreUnavailable,
    )
}


def remote_error_from_wire(
    status: int, body: Any, *, node: str | None = None, retry_after: str | None = None
) -> RPCError:
    """Turn a non-200 answer into the local exception for its error type."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("type"), str):
        return ProtocolError(f"HTTP {status} without the contract's error body", node=node)
    message = str(error.get("message", ""))
    cls = REMOTE_ERRORS.get(error["type"])
    if cls is None:
        return ProtocolError(f"HTTP {status} {error['type']}: {message}", node=node)
    if cls is NodeBusy or cls is StoreUnavailable:
        return cls(message, node=node, retry_after_s=_parse_retry_after(retry_after))
    return cls(message, node=node)


def _parse_retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
