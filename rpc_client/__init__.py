"""The noded wire protocol, the single-node client, the exception tree and ``rpc-cli``.

The names below are imported on first use (PEP 562), so that importing a part of the
package, as every program's entry point does first (:mod:`rpc_client.entry`), imports
nothing else: a Ctrl-C while a program starts lands in code that can answer it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpc_client.lazy_names import lazy_names

if TYPE_CHECKING:
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

#: each public name, and the module that defines it
_DEFINED_IN = {
    "BadRequest": "rpc_client.errors",
    "CallTimeout": "rpc_client.errors",
    "ConnectionLost": "rpc_client.errors",
    "Forbidden": "rpc_client.errors",
    "FunctionFailed": "rpc_client.errors",
    "InsufficientStorage": "rpc_client.errors",
    "InvalidArguments": "rpc_client.errors",
    "MethodNotAllowed": "rpc_client.errors",
    "NodeBusy": "rpc_client.errors",
    "NodeShuttingDown": "rpc_client.errors",
    "NodeTimeout": "rpc_client.errors",
    "NodeUnreachable": "rpc_client.errors",
    "ProtocolError": "rpc_client.errors",
    "RemoteError": "rpc_client.errors",
    "RequestIdConflict": "rpc_client.errors",
    "RequestTooLarge": "rpc_client.errors",
    "RPCError": "rpc_client.errors",
    "TransportError": "rpc_client.errors",
    "UnknownFunction": "rpc_client.errors",
    "UnknownFunctionCall": "rpc_client.errors",
    "UnknownProcedure": "rpc_client.errors",
    "CallState": "rpc_client.protocol",
    "FncId": "rpc_client.protocol",
}

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


__getattr__, __dir__ = lazy_names(__name__, _DEFINED_IN, __all__)
