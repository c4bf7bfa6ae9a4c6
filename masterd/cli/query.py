"""The commands that ask a node about itself: ``list``, ``identify``, ``functions``,
``reload``."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from masterd.cli.cells import cell, seconds_cell
from masterd.cli.common import print_json
from masterd.cli.exits import EXIT_FAILED, EXIT_OK
from masterd.results import counted
from rpc_client.client import NodeClient


def add_query_commands(sub: Any) -> None:
    listing = sub.add_parser("list", help="ListFunctions: running and kept calls, as a table")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    sub.add_parser("identify", help="Identify: who the node is")
    sub.add_parser("functions", help="DescribeFunctions: what the node can run")
    sub.add_parser("reload", help="ReloadFunctions: the node imports its function modules again")


async def cmd_list(node: NodeClient, args: argparse.Namespace) -> int:
    calls = await node.list_functions()
    if args.json:
        print_json({"functions": calls})
    else:
        print(format_table(calls))
    return EXIT_OK


def format_table(calls: list[dict[str, Any]]) -> str:
    """Running calls first, then finished ones, newest first; how each ended (STATE);
    cpu and rss of running ones.  The node's strings are shown with their control
    characters escaped (:mod:`masterd.cli.cells`)."""
    rows = [("FNC_ID", "FUNCTION", "STATE", "ELAPSED", "PID", "CPU", "RSS")]
    ordered = sorted(calls, key=lambda c: (bool(c.get("finished")), -_number(c.get("started"))))
    for call in ordered:
        rows.append((
            cell(call.get("fnc_id")), cell(call.get("fn_name")),
            cell(_outcome(call)),
            seconds_cell(call.get("elapsed_s") or 0, 1), cell(call.get("pid")),
            "-" if call.get("cpu_s") is None else seconds_cell(call["cpu_s"], 2),
            "-" if call.get("rss_bytes") is None else _megabytes(call["rss_bytes"]),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
             for row in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines) + f"\n{counted(len(calls), 'call')}"


def _number(value: Any) -> float:
    """A node's number, 0 if it sent something else (a table is still printed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if abs(value) <= 1e308 else math.inf


def _megabytes(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > 1e308:
        return cell(value)
    return f"{value / 2**20:.1f}M" if value < 2**60 else f"{value / 2**20:.3g}M"


def _outcome(call: dict[str, Any]) -> str:
    """``running``, ``ok``, ``failed:ValueError`` or ``aborted`` (a node older than the
    ``outcome`` field: ``finished``)."""
    outcome = call.get("outcome")
    if outcome is None:
        return "finished" if call.get("finished") else "running"
    if outcome == "failed" and call.get("error_type"):
        return f"failed:{call['error_type']}"
    return str(outcome)


async def cmd_identify(node: NodeClient, args: argparse.Namespace) -> int:
    print_json(await node.identify())
    return EXIT_OK


async def cmd_reload(node: NodeClient, args: argparse.Namespace) -> int:
    """Exit 0 if the node runs the new code now, 1 (the old code serving) if not."""
    answer = await node.reload_functions()
    if not answer.get("reloaded"):
        print(f"rpc-cli: reload failed: {answer.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    print_json({"reloaded": True, "functions": sorted(answer.get("functions") or {})})
    return EXIT_OK


async def cmd_functions(node: NodeClient, args: argparse.Namespace) -> int:
    print_json({"functions": await node.describe_functions()})
    return EXIT_OK


QUERY_COMMANDS = {
    "list": cmd_list,
    "identify": cmd_identify,
    "functions": cmd_functions,
    "reload": cmd_reload,
}
