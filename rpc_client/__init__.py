"""The noded wire protocol, the single-node client, the exception tree and ``rpc-cli``."""

from __future__ import annotations

from rpc_client.errors import (
    BadRequest,
    CallTimeout,
    ConnectionLost,
    Forbidden,
    FunctionFailed,
    InsufficientStorage,
    InvalidArguments,
    MethodNotAllowed,
    NodeBusy,
    NodeShuttingDown,
    NodeTimeout,
    NodeUnreachable,
    ProtocolError,
    RemoteError,
    RequestIdConflict,
    RequestTooLarge,
    RPCError,
    TransportError,
    UnknownFunction,
    UnknownFunctionCall,
    UnknownProcedure,
)
from rpc_client.protocol import CallState, FncId

__all__ = [
    "BadRequest",
    "CallState",
    "CallTimeout",
    "ConnectionLost",
    "FncId",
    "Forbidden",
    "FunctionFailed",
    "InsufficientStorage",
    "InvalidArguments",
    "MethodNotAllowed",
    "NodeBusy",
    "NodeShuttingDown",
    "NodeTimeout",
    "NodeUnreachable",
    "ProtocolError",
    "RPCError",
    "RemoteError",
    "RequestIdConflict",
    "RequestTooLarge",
    "TransportError",
    "UnknownFunction",
    "UnknownFunctionCall",
    "UnknownProcedure",
]
