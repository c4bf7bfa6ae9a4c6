"""``rpc-cli wait FNC_ID --follow`` and ``rpc-cli output FNC_ID``: a call's output."""

from __future__ import annotations

import argparse

from masterd.cli.common import print_state
from masterd.cli.exits import EXIT_OK
from masterd.cli.output_printer import OutputPrinter
from masterd.follow_output import follow
from masterd.options import CallOptions
from masterd.output_events import events_of
from rpc_client.client import NodeClient


async def cmd_wait_follow(node: NodeClient, args: argparse.Namespace) -> int:
    """Print the call's output from ``--from`` on as it comes, then its state."""
    printer = OutputPrinter()
    try:
        options = CallOptions(wait_s=args.wait)
        async for event in follow(node, args.fnc_id, args.from_, args.timeout, options=options):
            printer(event)
    finally:
        printer.close()
    return print_state(await node.wait_for_function(args.fnc_id, timeout=0))


async def cmd_output(node: NodeClient, args: argparse.Namespace) -> int:
    """Print the output the node keeps of a call, from ``--from`` on, without waiting."""
    printer = OutputPrinter()
    position = args.from_
    try:
        while True:
            state = await node.wait_for_function(args.fnc_id, timeout=0, output_from=position)
            output = state.output or {"next": position, "events": []}
            for event in events_of(node.name, args.fnc_id, output):
                printer(event)
            if not output["events"] or output["next"] <= position:
                return EXIT_OK
            position = output["next"]
    finally:
        printer.close()
