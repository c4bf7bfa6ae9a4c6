"""What every rpc-cli command shares: exit statuses, argument parsing, printing."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from masterd.cli.exits import EXIT_FAILED, EXIT_NODE, EXIT_OK, EXIT_RUNNING, EXIT_USAGE
from rpc_client.client import NodeClient
from rpc_client.errors import (
    FunctionFailed,
    InsufficientStorage,
    NodeBusy,
    NodeShuttingDown,
    RemoteError,
    RPCError,
    StoreUnavailable,
    TransportError,
)
from rpc_client.protocol import DEFAULT_PORT, CallState
from rpc_client.tls import TLSConfig

T = TypeVar("T")

_ABORT_ON_INTERRUPT_S = 15.0
_FN_HELP = "the function to run (rpc-cli functions lists what the node has)"


def add_function_args(parser: argparse.ArgumentParser, *, optional: str | None = None) -> None:
    """FN and ARGS_JSON; with ``optional``, FN may be left out (saying when, in its help)."""
    if optional is None:
        parser.add_argument("fn_name", help=_FN_HELP)
    else:
        parser.add_argument("fn_name", nargs="?", help=optional)
    parser.add_argument(
        "fn_args",
        nargs="?",
        default="{}",
        metavar="ARGS_JSON",
        help="named arguments as a JSON object, e.g. '{\"seconds\": 2}'",
    )


def parse_node(
    text: str, *, default_port: int = DEFAULT_PORT, flag: str = "--node"
) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address; ``ValueError``
    saying what is wrong with anything else (naming ``flag``)."""
    if "://" in text or "/" in text:
        raise ValueError(
            f"{flag} {text!r}: give HOST or HOST:PORT, not a URL (TLS is chosen with "
            "--tls-cert, --tls-key and --tls-ca)"
        )
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, None
    if not host:
        raise ValueError(f"{flag} {text!r}: no host")
    return host, default_port if port is None else _port(text, port, flag)


def _port(text: str, port: str, flag: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{flag} {text!r}: the port must be a number from 1 to 65535")
    return int(port)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds >= 0")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, > 0."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0")
    return value


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


def print_state(state: CallState, *, raw: bool = False, say_failed: bool = True) -> int:
    """Print a call's state (without the output already shown), or with ``raw`` only its
    result as JSON (for scripts); its exit status.  On a terminal a failure's traceback is
    printed as text, not inside a JSON string; the failure is said once on stderr (not
    at all with ``say_failed`` False: an abort that ended the call succeeded)."""
    wire = state.to_wire()
    wire.pop("output", None)
    traceback_as_text = (
        state.error is not None
        and bool(state.error.get("traceback"))
        and (raw or sys.stdout.isatty())
    )
    if raw:
        if state.finished and state.error is None:
            sys.stdout.write(orjson.dumps(state.result).decode() + "\n")
    elif traceback_as_text:
        print_json({**wire, "error": {**(state.error or {}), "traceback": "(below)"}})
    else:
        print_json(wire)
    if not state.finished:
        if raw:
            print(f"rpc-cli: {state.fnc_id} is still running", file=sys.stderr)
        return EXIT_RUNNING
    if state.error is not None:
        if say_failed:
            _say_failure(FunctionFailed(state.error, fnc_id=state.fnc_id), traceback_as_text)
        return EXIT_FAILED
    return EXIT_OK


def _say_failure(failure: FunctionFailed, traceback_as_text: bool) -> None:
    """The traceback, whose last line names the error, or else one line that does."""
    traceback = str(failure.traceback or "").rstrip()
    if traceback_as_text:
        print(traceback, file=sys.stderr)
        if traceback.endswith(failure.message.rstrip()):
            return  # said once: the traceback's last line is "Type: message"
    print(f"rpc-cli: function failed: {failure}", file=sys.stderr)


def exit_status_of(exc: RPCError) -> int:
    """The exit status for an error that stopped the command."""
    if isinstance(
        exc, TransportError | NodeBusy | NodeShuttingDown | InsufficientStorage | StoreUnavailable
    ):
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
    for flag, path in zip(("--tls-cert", "--tls-key", "--tls-ca"), files, strict=True):
        if not path.is_file():
            raise ValueError(f"{flag} {path}: no such file")
    return TLSConfig(
        cert=args.tls_cert,
        key=args.tls_key,
        ca=args.tls_ca,
        verify_name=not args.tls_no_verify_name,
        server_name=args.tls_server_name,
    )


async def on_interrupt(
    node: NodeClient,
    args: argparse.Namespace,
    fnc_id: Callable[[], Awaitable[str | None]],
    work: Awaitable[T],
) -> T:
    """Run ``work``; on Ctrl-C, abort the call (or with ``--detach`` leave it running and
    say how to reattach), say so, and let the interrupt end the program (exit 130)."""
    try:
        return await work
    except asyncio.CancelledError:  # asyncio.run's answer to SIGINT
        which = None
        with contextlib.suppress(RPCError, TimeoutError):
            which = await asyncio.wait_for(fnc_id(), _ABORT_ON_INTERRUPT_S)
        if which is None:
            print("rpc-cli: interrupted; the node did not name the call", file=sys.stderr)
        elif getattr(args, "detach", False):
            reattach = f"rpc-cli --node {args.node} wait {which} --follow"
            print(f"rpc-cli: detached; {which} runs on (rpc-cli --node {args.node} abort "
                  f"{which} stops it). Reattach with:\n  {reattach}", file=sys.stderr)  # fmt: skip
        else:
            with contextlib.suppress(RPCError, TimeoutError):
                await asyncio.wait_for(node.abort_function(which), _ABORT_ON_INTERRUPT_S)
            print(f"aborted {which}", file=sys.stderr)
        raise
