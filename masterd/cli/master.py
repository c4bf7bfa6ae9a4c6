"""The commands that ask ganeti-masterd (``rpc-cli --master HOST:PORT``, or
``$NODED_MASTER``): ``nodes`` (its registry, as a table) and ``events`` (one line per
event; ``--follow`` waits for new ones until Ctrl-C, then exits 0 quietly).

A master that cannot be reached is one line on stderr and exit 4, as a node is; once
``--follow`` follows, a master that goes away is waited for instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from masterd.cli.cells import cell
from masterd.cli.common import parse_node, print_json, tls_from_args
from masterd.cli.exits import EXIT_OK
from masterd.cli.jobs import cmd_job
from masterd.master_client import ListedNode, MasterClient, MasterEvent
from rpc_client.errors import (
    NodeBusy,
    NodeShuttingDown,
    StoreUnavailable,
    TransportError,
    UnknownProcedure,
)
from rpc_client.master_protocol import MASTER_PORT

MASTER_ENV = "NODED_MASTER"
#: what ends a follow's long-poll without ending the follow, and the pause after it
_TRANSIENT = (TransportError, StoreUnavailable, NodeBusy, NodeShuttingDown)
_RETRY_S = 1.0
#: the longest data shown on an event's line (--json shows all of it)
_DATA_CHARS = 200
#: event columns padded to these widths (a stream cannot measure its rows)
_ID_WIDTH, _NAME_WIDTH, _TYPE_WIDTH = 6, 10, 15


def add_events_command(sub: Any) -> None:
    events = sub.add_parser(
        "events", help="the master's events, one line each (needs --master); --follow for new ones"
    )
    events.add_argument("--follow", "-f", action="store_true",
                        help="then wait for new events and print them as they come, until "
                        "Ctrl-C")  # fmt: skip
    events.add_argument("--type", dest="types", action="append", metavar="PATTERN",
                        help="only events whose type fits this shell-style pattern "
                        "(disk.*); repeat for more")  # fmt: skip
    events.add_argument("--names", type=_names, default=None, metavar="A,B",
                        help="only events of these nodes")  # fmt: skip
    events.add_argument("--from", dest="from_", type=_position, default=0, metavar="N",
                        help="from event id N (default 0: the first kept)")  # fmt: skip
    events.add_argument("--json", action="store_true", help="JSON lines instead of text")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an event id") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give an event id >= 0")
    return value


def master_of(args: argparse.Namespace) -> str | None:
    """``--master``, else ``$NODED_MASTER`` (already the option's default), else None."""
    return getattr(args, "master", None) or None


def client_of(args: argparse.Namespace) -> MasterClient:
    master = master_of(args)
    if master is None:
        raise ValueError(f"{args.command} needs --master HOST:PORT (or ${MASTER_ENV})")
    host, port = parse_node(master, default_port=MASTER_PORT, flag="--master")
    return MasterClient(host, port, tls=tls_from_args(args))


async def cmd_nodes(master: MasterClient, args: argparse.Namespace) -> int:
    nodes = await master.nodes()
    if getattr(args, "json", False):
        print_json({"nodes": [node.__dict__ for node in nodes]})
    else:
        print(format_nodes(nodes, time.time()))
    return EXIT_OK


def format_nodes(nodes: list[ListedNode], now: float) -> str:
    """A table: name, state, when last heard from, labels, version, address; then the
    count by state."""
    rows: list[tuple[str, ...]] = [("NAME", "STATE", "LAST SEEN", "LABELS", "VERSION", "ADDRESS")]
    for node in nodes:
        where = f"{node.address}:{node.port}" if node.address else "-"
        rows.append(tuple(map(cell, (node.name, node.state, _age(node.last_seen, now),
                                     ",".join(node.labels) or "-", node.version or "-",
                                     where))))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]  # fmt: skip
    states = [node.state for node in nodes]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(sorted(states)))
    total = f"{len(nodes)} node{'' if len(nodes) == 1 else 's'}"
    return (
        "\n".join(line.rstrip() for line in lines)
        + f"\n{total}"
        + (f": {counts}" if counts else "")
    )


def _age(then: float | None, now: float) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, now - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


async def cmd_events(master: MasterClient, args: argparse.Namespace) -> int:
    """What is kept from ``--from``; with ``--follow``, then new ones until Ctrl-C."""
    show = _json_line if args.json else _text_line
    options = {"types": args.types, "nodes": args.names}
    # the first answer: a master that is not there ends it here, with exit status 4
    page = await master.events(args.from_, timeout=0, **options)
    for item in page.events:
        show(item)
    if args.follow:
        sys.stdout.flush()
        try:
            await _follow(master, page.next, options, show)
        except asyncio.CancelledError:  # Ctrl-C: following ends, and that is all it was
            return EXIT_OK
    while page.events:  # the rest of what is kept, page by page
        page = await master.events(page.next, timeout=0, **options)
        for item in page.events:
            show(item)
    return EXIT_OK


async def _follow(
    master: MasterClient, position: int, options: dict[str, Any],
    show: Callable[[MasterEvent], None],
) -> None:  # fmt: skip
    """New events as they come, for ever.  A master that goes away meanwhile (restarted,
    its store down) is waited for, said once on stderr: it goes on from the same
    position, so nothing is missed (the events are in its store)."""
    waiting = False
    while True:
        try:
            async for item in master.follow_events(position, **options):
                if waiting:
                    print("rpc-cli: the master answers again", file=sys.stderr, flush=True)
                    waiting = False
                show(item)
                sys.stdout.flush()  # a line as it comes, also into a pipe
                position = item.id + 1
        except _TRANSIENT as exc:
            if not waiting:
                print(f"rpc-cli: {type(exc).__name__}: {exc}; following again once it "
                      "answers (Ctrl-C stops)", file=sys.stderr, flush=True)  # fmt: skip
                waiting = True
            await asyncio.sleep(_RETRY_S)


def format_event(item: MasterEvent) -> str:
    """``id  time (UTC)  node  type  fnc_id  data``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(item.at))
    millis = int(item.at * 1000) % 1000
    data = "" if item.data is None else cell(orjson.dumps(item.data).decode())
    if len(data) > _DATA_CHARS:
        data = data[: _DATA_CHARS - 3] + "..."
    fields = (f"{item.id:<{_ID_WIDTH}}", f"{stamp}.{millis:03d}Z",
              f"{cell(item.node):<{_NAME_WIDTH}}", f"{cell(item.type):<{_TYPE_WIDTH}}",
              cell(item.fnc_id or "-"))  # fmt: skip
    return "  ".join((*fields, data)).rstrip()


def _text_line(item: MasterEvent) -> None:
    print(format_event(item))


def _json_line(item: MasterEvent) -> None:
    print(orjson.dumps(item.to_wire()).decode())


MasterCommand = Callable[[MasterClient, argparse.Namespace], Awaitable[int]]

#: the commands that ask the master
MASTER_COMMANDS: dict[str, MasterCommand] = {"nodes": cmd_nodes, "events": cmd_events,
                                             "job": cmd_job}  # fmt: skip


async def run_master_command(args: argparse.Namespace) -> int:
    async with client_of(args) as master:
        try:
            return await MASTER_COMMANDS[args.command](master, args)
        except UnknownProcedure as exc:
            if "StartFunction" not in exc.message:  # not a ganeti-noded's procedures
                raise
            raise UnknownProcedure(
                f"{exc.message}: {master.name} is a ganeti-noded, not ganeti-masterd (which "
                f"listens on port {MASTER_PORT} by default); give --master HOST[:PORT] of "
                "ganeti-masterd"
            ) from exc
