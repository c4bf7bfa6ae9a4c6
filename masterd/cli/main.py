"""``rpc-cli``: every procedure of one node, by hand.  JSON on stdout.  With ``--master``,
ganeti-masterd's nodes and events (:mod:`masterd.cli.master`).

Exit statuses: :data:`masterd.cli.exits.EXITS`, each command's own, which its ``--help``
shows (:mod:`masterd.cli.parsing`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from masterd.call import CallOptions, Deadline, Rounds, new_request_id, run_call
from masterd.cli.audit import add_audit_commands, cmd_audit
from masterd.cli.certs import add_certs_commands, cmd_certs
from masterd.cli.common import (
    add_function_args,
    exit_status_of,
    on_interrupt,
    parse_fn_args,
    parse_node,
    positive_seconds,
    print_state,
    seconds,
    tls_from_args,
)
from masterd.cli.completion import add_completion_command, cmd_completion
from masterd.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNNING,
    EXIT_USAGE,
)
from masterd.cli.follow import cmd_output, cmd_wait_follow
from masterd.cli.gather import add_gather_command, add_nodes_command, cmd_nodes, run_gather
from masterd.cli.jobs import add_job_command
from masterd.cli.master import MASTER_ENV, add_events_command, master_of, run_master_command
from masterd.cli.output_printer import OutputPrinter
from masterd.cli.parsing import Parser, describe_commands
from masterd.cli.query import QUERY_COMMANDS, add_query_commands
from masterd.node import load_nodes
from rpc_client.client import NodeClient
from rpc_client.errors import RPCError
from rpc_client.protocol import DEFAULT_PORT, CallState

NODE_ENV = "RPC_CLI_NODE"
NODES_ENV = "NODED_NODES"
FNC_ID_HELP = "the call's fnc_id, as start or call printed it (rpc-cli list shows them)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rpc-cli", description="Call a ganeti-noded, or ask ganeti-masterd "
                     "(--master) about its nodes, events and jobs.")  # fmt: skip
    parser.add_argument("--version", action=_PrintVersion, nargs=0,
                        help="show the version and exit")  # fmt: skip
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_call_commands(sub)
    add_query_commands(sub)
    add_certs_commands(sub)
    add_audit_commands(sub)
    add_gather_command(sub)
    add_nodes_command(sub)
    add_events_command(sub)
    add_job_command(sub)
    add_completion_command(sub, parser)
    for name, command in sub.choices.items():  # accepted after the command too
        if name not in ("certs", "audit", "completion"):  # they take no node
            _add_global_options(command, after_command=True)
    describe_commands(parser)
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """The node and TLS options; after the command they override what stood before it."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if after_command else value

    parser.add_argument(
        "--node",
        default=default(os.environ.get(NODE_ENV, f"127.0.0.1:{DEFAULT_PORT}")),
        metavar="NAME|HOST[:PORT]",
        help=f"the node: a name from the nodes file, or an address (default ${NODE_ENV} "
        f"or 127.0.0.1:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--nodes", default=default(os.environ.get(NODES_ENV)), metavar="NODES_TOML",
        help=f"the cluster's nodes file, for gather and --node NAME (default ${NODES_ENV})",
    )  # fmt: skip
    parser.add_argument(
        "--master", default=default(os.environ.get(MASTER_ENV)), metavar="HOST[:PORT]",
        help=f"ganeti-masterd, for nodes, events and jobs (default ${MASTER_ENV}; port 1812)",
    )  # fmt: skip
    tls = parser.add_argument_group("mutual TLS (all three, or none)")
    for flag, variable, help_text in (
        ("--tls-cert", "NODED_TLS_CERT", "this master's certificate"),
        ("--tls-key", "NODED_TLS_KEY", "its key"),
        ("--tls-ca", "NODED_TLS_CA", "the cluster CA"),
    ):
        tls.add_argument(
            flag, type=Path, default=default(os.environ.get(variable)), metavar="FILE",
            help=f"{help_text} (default ${variable})",
        )  # fmt: skip
    tls.add_argument(
        "--tls-server-name",
        default=default(None),
        metavar="NAME",
        help="the name the node's certificate must carry (default: the host)",
    )
    tls.add_argument(
        "--tls-no-verify-name",
        action="store_true",
        default=default(False),
        help="accept any node certificate the CA signed (one shared certificate)",
    )


class _PrintVersion(argparse.Action):
    """``--version``: looked up only when asked (importlib.metadata takes 20-45 ms to
    import, a tenth of every rpc-cli run)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("noded")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        print(f"rpc-cli {version}")
        parser.exit()


def _add_call_commands(sub: Any) -> None:
    start = sub.add_parser("start", help="StartFunction: start a call, wait up to --timeout")
    add_function_args(start)
    start.add_argument("--timeout", type=seconds, default=0.0, help="seconds to wait (default 0)")
    start.add_argument("--request-id", default=None, help="idempotency key")
    _add_abort_after(start)
    wait = sub.add_parser("wait", help="WaitForFunction: wait up to --timeout for a call")
    wait.add_argument("fnc_id", help=FNC_ID_HELP)
    wait.add_argument(
        "--timeout",
        type=seconds,
        default=None,
        help="seconds (default 10; with --follow, the overall deadline, default none)",
    )
    wait.add_argument(
        "--follow", action="store_true", help="print its output as it comes, then its state"
    )
    _add_output_options(wait)
    output = sub.add_parser("output", help="print the output a node keeps of a call")
    output.add_argument("fnc_id", help=FNC_ID_HELP)
    output.add_argument(
        "--from", dest="from_", type=int, default=0, metavar="N", help="from position N"
    )
    _add_call_command(sub)


def _add_call_command(sub: Any) -> None:
    call = sub.add_parser("call", help="start a call and wait in rounds until it finishes")
    add_function_args(call)
    call.add_argument(
        "--timeout", type=seconds, default=None, help="overall deadline in seconds (default: none)"
    )
    call.add_argument(
        "--wait", type=positive_seconds, default=10.0, help="seconds per round (default 10)"
    )
    _add_abort_after(call)
    call.add_argument(
        "--raw",
        action="store_true",
        help="print only the result, as JSON (for scripts and jq); a failure on stderr",
    )
    call.add_argument(
        "--detach",
        action="store_true",
        help="on Ctrl-C leave the call running (and say how to reattach) instead of aborting it",
    )
    call.add_argument(
        "--follow",
        action="store_true",
        help="print its stdout to stdout, its stderr and progress to stderr, as they come",
    )
    abort = sub.add_parser("abort", help="AbortFunction: kill a call")
    abort.add_argument("fnc_id", help=FNC_ID_HELP)


def _add_abort_after(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--abort-after",
        type=positive_seconds,
        default=None,
        metavar="S",
        help="the node kills the function this long after it started (FunctionAborted)",
    )


def _add_output_options(wait: argparse.ArgumentParser) -> None:
    wait.add_argument(
        "--from",
        dest="from_",
        type=int,
        default=0,
        metavar="N",
        help="with --follow, from position N of its output (default 0: the start)",
    )
    wait.add_argument(
        "--wait",
        type=positive_seconds,
        default=10.0,
        help="seconds per round on the node (default 10)",
    )
    wait.add_argument("--detach", action="store_true", help="kept for scripts: wait never "
                      "aborts on Ctrl-C (--follow detaches, saying how to abort)")  # fmt: skip


# --- commands -------------------------------------------------------------------------

Command = Callable[[NodeClient, argparse.Namespace], Awaitable[int]]


async def cmd_start(node: NodeClient, args: argparse.Namespace) -> int:
    state = await node.start_function(
        args.fn_name,
        parse_fn_args(args.fn_args),
        timeout=args.timeout,
        abort_after=args.abort_after,
        request_id=args.request_id,
    )
    return print_state(state)


async def cmd_wait(node: NodeClient, args: argparse.Namespace) -> int:
    if args.follow:

        async def named() -> str:
            return str(args.fnc_id)

        # attaching never aborts on Ctrl-C; only ``call``, which started the call, does
        attached = argparse.Namespace(**{**vars(args), "detach": True})
        return await on_interrupt(node, attached, named, cmd_wait_follow(node, args))
    timeout = 10.0 if args.timeout is None else args.timeout
    # in rounds: a node's --max-wait shorter than the timeout asked is no early answer
    rounds = Rounds(node, Deadline(timeout), CallOptions(wait_s=max(timeout, 0.001)))
    try:
        state = await rounds.wait(args.fnc_id)
        return print_state(await rounds.poll(state))
    except asyncio.CancelledError:  # Ctrl-C: waiting stops, the call does not
        print(f"rpc-cli: stopped waiting; {args.fnc_id} runs on (rpc-cli --node {args.node} "
              f"abort {args.fnc_id} stops it)", file=sys.stderr)  # fmt: skip
        raise


async def cmd_call(node: NodeClient, args: argparse.Namespace) -> int:
    began = time.monotonic()

    def progress(state: CallState) -> None:
        elapsed = time.monotonic() - began
        print(f"rpc-cli: {state.fnc_id} running, {elapsed:.1f} s elapsed", file=sys.stderr)

    printer = OutputPrinter() if args.follow else None
    started: dict[str, str] = {}

    def running(state: CallState) -> None:
        started["fnc_id"] = state.fnc_id
        if printer is None:
            progress(state)

    fn_args, request_id = parse_fn_args(args.fn_args), new_request_id()
    call = run_call(
        node,
        args.fn_name,
        fn_args,
        args.timeout,
        CallOptions(wait_s=args.wait, abort_after_s=args.abort_after),
        request_id=request_id,
        on_progress=running,
        on_output=printer,
    )

    async def named() -> str:
        """The call's fnc_id; before the node answered, asked again by its request_id
        (idempotent: the call it started, not a second one)."""
        if "fnc_id" not in started:
            again = await node.start_function(
                args.fn_name, fn_args, timeout=0, request_id=request_id
            )
            started["fnc_id"] = again.fnc_id
        return started["fnc_id"]

    try:
        state = await on_interrupt(node, args, named, call)
    finally:
        if printer is not None:
            printer.close()
    return print_state(state, raw=args.raw)


async def cmd_abort(node: NodeClient, args: argparse.Namespace) -> int:
    """Exit 0 once the call has ended (aborted now, or finished before)."""
    state = await node.abort_function(args.fnc_id)
    print_state(state, say_failed=False)  # its FunctionAborted is the abort succeeding
    return EXIT_OK if state.finished else EXIT_RUNNING


COMMANDS: dict[str, Command] = {
    "start": cmd_start,
    "wait": cmd_wait,
    "call": cmd_call,
    "abort": cmd_abort,
    "output": cmd_output,
    **QUERY_COMMANDS,
}


#: the commands that ask no node
LOCAL_COMMANDS = {"certs": cmd_certs, "audit": cmd_audit, "nodes": cmd_nodes,
                  "completion": cmd_completion}  # fmt: skip


async def run(args: argparse.Namespace) -> int:
    if args.command == "gather":
        return await run_gather(args, tls_from_args(args))
    async with client_of(args) as node:
        return await COMMANDS[args.command](node, args)


def client_of(args: argparse.Namespace) -> NodeClient:
    """The node of ``--node``: by its name in the nodes file if it has one, else by its
    address.  Its TLS: the flags, else the environment, else the nodes file's."""
    tls = tls_from_args(args)
    if args.nodes is not None:
        named = next((n for n in load_nodes(args.nodes) if n.name == args.node), None)
        if named is not None:
            return NodeClient(named.address, named.port, name=named.name,
                              expected_uuid=named.uuid, tls=tls or named.tls)  # fmt: skip
    host, port = parse_node(args.node)
    return NodeClient(host, port, tls=tls)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a reader of stdout that went away (``rpc-cli ... | head``) ends
    it quietly with 141, as SIGPIPE would, and leaves the calls on the nodes as a
    Ctrl-C does.  Not by restoring SIGPIPE's default: a node's socket could raise it."""
    try:
        try:
            status = _run_command(argv)
        finally:  # --help and --version exit: their output is flushed here too
            sys.stdout.flush()  # here, not at exit, where a reader gone prints a traceback
    except BrokenPipeError:
        return _stdout_gone()
    return status


def _stdout_gone() -> int:
    """What the Python docs advise on a broken pipe: stdout to /dev/null, so that the
    interpreter's last flush at exit finds nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # What start-up made lives as long as the process: out of the collector's way, a
    # fan-out to a thousand nodes spends a sixth less CPU (doc/performance.md).
    gc.freeze()
    try:
        if args.command in ("events", "job") or (args.command == "nodes" and master_of(args)):
            return uvloop.run(run_master_command(args))
        if args.command in LOCAL_COMMANDS:
            return LOCAL_COMMANDS[args.command](args)
        return uvloop.run(run(args))
    except KeyboardInterrupt:  # Ctrl-C: what became of the call is said already
        return EXIT_INTERRUPTED
    except RPCError as exc:
        print(f"rpc-cli: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_status_of(exc)
    except ValueError as exc:
        print(f"rpc-cli: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
