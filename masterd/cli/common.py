"""What every rpc-cli command shares: exit statuses, argument parsing, printing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from rpc_client.errors import (
    FunctionFailed,
    InsufficientStorage,
    NodeBusy,
    NodeShuttingDown,
    RemoteError,
    RPCError,
    TransportError,
)
from rpc_client.protocol import DEFAULT_PORT, CallState
from rpc_client.tls import TLSConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING, EXIT_NODE = 0, 1, 2, 3, 4


def add_function_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("fn_name")
    parser.add_argument(
        "fn_args",
        nargs="?",
        default="{}",
        metavar="ARGS_JSON",
        help="named arguments as a JSON object, e.g. '{\"seconds\": 2}'",
    )


def parse_node(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, DEFAULT_PORT


def parse_fn_args(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"ARGS_JSON is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("ARGS_JSON must be a JSON object of named arguments")
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def print_state(state: CallState) -> int:
    """Print a call's state (without the output already shown); its exit status."""
    wire = state.to_wire()
    wire.pop("output", None)
    print_json(wire)
    if not state.finished:
        return EXIT_RUNNING
    if state.error is not None:
        failure = FunctionFailed(state.error, fnc_id=state.fnc_id)
        print(f"rpc-cli: function failed: {failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def exit_status_of(exc: RPCError) -> int:
    """The exit status for an error that stopped the command."""
    if isinstance(exc, TransportError | NodeBusy | NodeShuttingDown | InsufficientStorage):
        return EXIT_NODE
    if isinstance(exc, RemoteError):
        return EXIT_USAGE
    return EXIT_FAILED


def tls_from_args(args: argparse.Namespace) -> TLSConfig | None:
    files = (args.tls_cert, args.tls_key, args.tls_ca)
    if not any(files):
        return None
    if not all(files):
        raise ValueError("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
    return TLSConfig(
        cert=args.tls_cert,
        key=args.tls_key,
        ca=args.tls_ca,
        verify_name=not args.tls_no_verify_name,
        server_name=args.tls_server_name,
    )
