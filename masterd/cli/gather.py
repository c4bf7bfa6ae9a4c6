"""``rpc-cli --nodes nodes.toml gather FN [ARGS_JSON]``: one line per node as it finishes;
``rpc-cli --nodes nodes.toml nodes``: the nodes file, with labels.

Exit status: 0 if every node succeeded, 1 if some function failed or some node was
skipped (and every node answered), 4 if some node was unreachable or timed out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from masterd.cli.cells import cell
from masterd.cli.common import (
    add_function_args,
    parse_fn_args,
    positive_seconds,
    seconds,
)
from masterd.cli.exits import EXIT_FAILED, EXIT_NODE, EXIT_OK
from masterd.cli.output_printer import PROGRESS_LINE_EVERY_S, OutputPrinter
from masterd.cluster import Cluster
from masterd.fanout import GatherSummary, NodeResult
from masterd.node import Node, load_nodes
from masterd.options import CallOptions, Rollout
from masterd.results import OUTCOMES, counted
from rpc_client.errors import FunctionFailed
from rpc_client.logs import TextFormatter
from rpc_client.tls import TLSConfig

_DETAIL_CHARS = 120
_TIMEOUT_S, _WAIT_S = 60.0, 10.0
#: what --resume cannot change, and why
_FIXED_ON_RESUME = {
    "canary": "the canaries are the first nodes of the first run, already counted",
    "labels": "the nodes are the batch file's",
    "batch_file": "the batch file is the one resumed",
}


def add_gather_command(sub: Any) -> None:
    gather = sub.add_parser("gather", help="call a function on every node of --nodes")
    add_function_args(gather, optional="the function (not with --resume)")
    gather.add_argument("--timeout", type=seconds, default=None,
                        help=f"overall deadline in seconds (default {_TIMEOUT_S:g}; with "
                        "--resume, the batch file's)")  # fmt: skip
    gather.add_argument("--wait", type=positive_seconds, default=None,
                        help=f"seconds per round (default {_WAIT_S:g}; with --resume, the "
                        "batch file's)")  # fmt: skip
    _add_rollout_options(gather)
    gather.add_argument("--labels", type=_labels, default=(), metavar="L1,L2",
                        help="only the nodes that carry every one of these labels")  # fmt: skip
    gather.add_argument("--batch-file", type=Path, metavar="FILE",
                        help="write what is asked of each node to FILE, for --resume")  # fmt: skip
    gather.add_argument("--resume", type=Path, metavar="FILE",
                        help="go on with the fan-out of a --batch-file whose master died: "
                        "nothing runs twice")  # fmt: skip
    gather.add_argument("--only-failed", action="store_true", help="print only nodes not ok")
    gather.add_argument("--json", action="store_true", help="JSON lines instead of text")
    gather.add_argument(
        "--follow",
        action="store_true",
        help="print every node's output as it comes, each line prefixed with the node's name",
    )
    gather.add_argument("--progress-every", type=seconds, default=None, metavar="S",
                        help="with --follow, at most one progress line a node every S seconds "
                        f"(default {PROGRESS_LINE_EVERY_S:g} on a terminal, else 0: every "
                        "report; its last is always shown)")  # fmt: skip


def _add_rollout_options(gather: argparse.ArgumentParser) -> None:
    gather.add_argument("--window", "--concurrency", type=_positive_int, default=None,
                        metavar="N", help="most nodes called at once; the next starts as soon "
                        "as one finishes (default: all; with --resume, the batch file's)",
                        )  # fmt: skip
    gather.add_argument("--canary", type=_count, default=None, metavar="K",
                        help="the first K nodes run first, alone; the rest only if all K "
                        "succeeded (not with --resume: the first run's canaries stay)")  # fmt: skip
    gather.add_argument("--max-failures", type=_count, default=None, metavar="M",
                        help="once more than M nodes failed, start no more (they are "
                        "SKIPPED; with --resume, default the batch file's)")  # fmt: skip


def add_nodes_command(sub: Any) -> None:
    nodes = sub.add_parser("nodes", help="the master's nodes and their states (with --master), "
                           "else the nodes of --nodes, with their labels")  # fmt: skip
    nodes.add_argument("--json", action="store_true", help="with --master: JSON, not a table")


def cmd_nodes(args: argparse.Namespace) -> int:
    if args.nodes is None:
        raise ValueError("nodes needs --master HOST:PORT (the master's registry) or --nodes "
                         "NODES_TOML")  # fmt: skip
    nodes = load_nodes(args.nodes)
    width = max(len(node.name) for node in nodes)
    for node in nodes:
        print(f"{node.name:<{width}}  {node.address}:{node.port}  {','.join(node.labels)}")
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _labels(text: str) -> tuple[str, ...]:
    return tuple(label.strip() for label in text.split(",") if label.strip())


async def run_gather(args: argparse.Namespace, tls: TLSConfig | None) -> int:
    if args.nodes is None:
        raise ValueError("gather needs --nodes NODES_TOML")
    if (args.fn_name is None) == (args.resume is None):
        raise ValueError("gather needs a function, or --resume FILE (not both)")
    if args.resume is not None:
        _check_resume_options(args)
        _show_batch_warnings()
    nodes = load_nodes(args.nodes)
    if tls is not None:  # the command line's TLS for the nodes the file gives none
        nodes = [node if node.tls else dataclasses.replace(node, tls=tls) for node in nodes]
    if args.labels and args.resume is None:
        nodes = [node for node in nodes if set(args.labels) <= set(node.labels)]
        if not nodes:
            raise ValueError(f"no node of {args.nodes} carries all of {','.join(args.labels)}")
    fn_args = parse_fn_args(args.fn_args)
    printer = (
        OutputPrinter(prefix_nodes=True, progress_every_s=args.progress_every)
        if args.follow
        else None
    )
    try:
        summary = await _gather(nodes, args, fn_args, printer)
    finally:
        if printer is not None:
            printer.close()
    _print_summary(summary, args.json)
    return _exit_status(summary)


async def _gather(
    nodes: list[Node], args: argparse.Namespace, fn_args: dict[str, Any],
    printer: OutputPrinter | None,
) -> GatherSummary:  # fmt: skip
    summary = GatherSummary()
    asked = _Asked()
    calls = asked.fnc_ids
    async with Cluster(nodes) as cluster:
        width = max(len(node.name) for node in cluster.nodes)
        if args.resume is not None:
            results = cluster.resume(args.resume, on_output=printer, on_call=asked,
                                     **_resume_overrides(args))  # fmt: skip
        else:
            results = cluster.call_many(
                args.fn_name, fn_args, _or(args.timeout, _TIMEOUT_S),
                options=CallOptions(wait_s=_or(args.wait, _WAIT_S)),
                rollout=Rollout(window=args.window, canary=args.canary or 0,
                                max_failures=args.max_failures),
                on_output=printer, batch_file=args.batch_file, on_call=asked,
            )  # fmt: skip
        try:  # closed here, not left to the loop's end: a print may fail (| head)
            async with contextlib.aclosing(results):
                async for result in results:
                    summary.results[result.node] = result
                    if printer is not None:
                        printer.node_done(result.node)  # its last progress report
                    if not (args.only_failed and result.ok):
                        _print_result(result, asked.elapsed_s(result.node), width, args.json)
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run's answer to SIGINT
            _report_interrupted([node.name for node in cluster.nodes], summary, calls, args)
            raise
    return summary


class _Asked:
    """The nodes asked: each one's fnc_id once named (None until then), and when it was
    asked: its call's own time counts from there, not from the start of the fan-out
    (a node may wait long for a place in the --window)."""

    def __init__(self) -> None:
        self.fnc_ids: dict[str, str | None] = {}
        self._asked_at: dict[str, float] = {}

    def __call__(self, node: str, fnc_id: str | None) -> None:
        """call_many's ``on_call``."""
        self.fnc_ids[node] = fnc_id
        self._asked_at.setdefault(node, time.monotonic())

    def elapsed_s(self, node: str) -> float | None:
        """How long ``node``'s call has taken; None if it was never asked (skipped, no
        place in the window before the deadline, finished in an earlier run)."""
        asked_at = self._asked_at.get(node)
        return None if asked_at is None else time.monotonic() - asked_at


def _check_resume_options(args: argparse.Namespace) -> None:
    for name, why in _FIXED_ON_RESUME.items():
        if getattr(args, name) not in (None, ()):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} cannot be given with --resume: {why}")


def _show_batch_warnings() -> None:
    """The batch file's warnings (a torn last line cut off) on stderr, as log lines."""
    logger = logging.getLogger("masterd.batch")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(TextFormatter())
        logger.addHandler(handler)
        logger.propagate = False


def _resume_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The options given with --resume: they replace the batch file's for this run."""
    given = {"timeout": args.timeout, "wait_s": args.wait, "window": args.window,
             "max_failures": args.max_failures}  # fmt: skip
    return {key: value for key, value in given.items() if value is not None}


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _report_interrupted(
    names: list[str], summary: GatherSummary, calls: dict[str, str | None],
    args: argparse.Namespace,
) -> None:  # fmt: skip
    """After a Ctrl-C, name every node not named yet: its call running (left to run, with
    its fnc_id), asked (its call may run), or not started; then how to go on."""
    states = {name: _state_on_interrupt(calls, name) for name in names
              if name not in summary.results}  # fmt: skip
    width = max(map(len, names))
    for name, state in states.items():
        if args.json:
            print(orjson.dumps({"node": name, "ok": False, "outcome": state,
                                "fnc_id": calls.get(name)}).decode())  # fmt: skip
        else:
            print(f"{name:<{width}}  {state.upper().replace('_', ' '):<11} "
                  f"{calls.get(name) or _MEANING[state]}")  # fmt: skip
    running = [name for name, state in states.items() if state == "running"]
    asked = [name for name, state in states.items() if state == "asked"]
    say = functools.partial(print, file=sys.stderr)
    say(f"rpc-cli: interrupted: {len(names) - len(states)} of {counted(len(names), 'node')} "
        "answered; "
        f"of the rest, {len(running)} running, {len(asked)} asked (a call may run), "
        f"{len(states) - len(running) - len(asked)} not started. Nothing was aborted.")  # fmt: skip
    where = f"rpc-cli --nodes {args.nodes} --node"
    if running:
        node, fnc_id = running[0], calls[running[0]]
        say(f"  follow one:  {where} {node} wait {fnc_id} --follow")
        say(f"  abort one:   {where} {node} abort {fnc_id}")
    if asked:
        say(f"  what runs on a node:  {where} {asked[0]} list")
    batch_file = args.resume or args.batch_file
    if batch_file is not None:
        say(f"  go on with the fan-out (nothing runs twice):  "
            f"rpc-cli --nodes {args.nodes} gather --resume {batch_file}")  # fmt: skip


def _state_on_interrupt(calls: dict[str, str | None], name: str) -> str:
    """A node not named when Ctrl-C came: its call named (running), asked, or neither."""
    if calls.get(name):
        return "running"
    return "asked" if name in calls else "not_started"


_MEANING = {
    "asked": "its call may run: a node names it at its first answer (--wait)",
    "not_started": "nothing was asked of it",
}


def _print_result(result: NodeResult, elapsed_s: float | None, width: int, as_json: bool) -> None:
    line = _json_line(result, elapsed_s) if as_json else _text_line(result, elapsed_s, width)
    print(line, flush=True)


def _text_line(result: NodeResult, elapsed_s: float | None, width: int) -> str:
    if result.ok:
        detail = orjson.dumps(result.value).decode()
    else:
        said = getattr(result.error, "message", result.error)
        if isinstance(result.error, FunctionFailed):  # its message is the node's alone
            said = f"{result.error.type}: {said}"
        detail = f"{type(result.error).__name__}: {said}"
    detail = cell(detail)
    if len(detail) > _DETAIL_CHARS:
        detail = detail[: _DETAIL_CHARS - 3] + "..."
    took = "-" if elapsed_s is None else f"{elapsed_s:.2f}s"
    return f"{cell(result.node):<{width}}  {result.outcome.upper():<11} {took:>8}  {detail}"


def _json_line(result: NodeResult, elapsed_s: float | None) -> str:
    entry: dict[str, Any] = {
        "node": result.node,
        "ok": result.ok,
        "outcome": result.outcome,
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
    }
    if result.ok:
        entry["result"] = result.value
    else:
        entry["error"] = {
            "type": type(result.error).__name__,
            "message": getattr(result.error, "message", str(result.error)),
            "remote_type": getattr(result.error, "type", None),
            "fnc_id": getattr(result.error, "fnc_id", None),
        }
    return orjson.dumps(entry).decode()


def _print_summary(summary: GatherSummary, as_json: bool) -> None:
    if as_json:
        counts = {o: summary.names(o) for o in OUTCOMES}
        print(orjson.dumps({"summary": counts}).decode())
    else:
        print(summary.line())


def _exit_status(summary: GatherSummary) -> int:
    if summary.all_ok:
        return EXIT_OK
    if summary.names("timed_out") or summary.names("unreachable"):
        return EXIT_NODE
    return EXIT_FAILED
