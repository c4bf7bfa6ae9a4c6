"""``make run``'s ganeti-masterd part: the node registering, a function's events
reaching the master as they happen, and a job through the master (:mod:`masterd.demo`
runs them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from masterd.cli.master import format_event, format_nodes
from masterd.master_client import MasterClient, MasterEvent
from rpc_client.client import NodeClient

#: how long the node may take to register once it answers calls
REGISTER_WAIT_S = 10.0
#: how long the demo's job may take, at most
JOB_WAIT_S = 20.0


async def show_registration(master: MasterClient, name: str, say: Callable[[str], None]) -> None:
    """Wait until ``name`` is alive on the master; show its nodes as ``rpc-cli`` does."""
    end = time.monotonic() + REGISTER_WAIT_S
    while not any(n.name == name and n.state == "alive" for n in await master.nodes()):
        if time.monotonic() > end:
            raise RuntimeError(f"{name} did not register within {REGISTER_WAIT_S:g} s")
        await asyncio.sleep(0.05)
    say(f"the node registered with ganeti-masterd (rpc-cli --master {master.name} nodes):")
    for line in format_nodes(await master.nodes(), time.time()).splitlines():
        say(f"     {line}")


async def events_arriving(
    node: NodeClient, master: MasterClient, say: Callable[[str], None]
) -> None:
    """Start ``copy_disks(2)``, which emits ``disk.copied`` per disk, and show each of
    its events as the master has it, with how long after its ``emit`` that was."""
    say("6. events          copy_disks(2) emits disk.copied per disk; the master has them:")
    position = (await master.events(None)).next
    began = time.monotonic()
    args = {"disks": 2, "seconds_each": 0.2}
    fnc_id = (await node.start_function("copy_disks", args, timeout=0)).fnc_id
    async for item in master.follow_events(position, types=["disk.*", "call.*"], wait_s=5):
        if item.fnc_id == fnc_id:
            _show(item, began, say)
            if item.type == "call.finish":
                break
    state = await node.wait_for_function(fnc_id, timeout=10)
    say(f"     the call returned {state.result!r}")


def _show(item: MasterEvent, began: float, say: Callable[[str], None]) -> None:
    after_ms = max(0.0, time.time() - item.at) * 1000
    data = "" if item.type == "call.finish" else f" {item.data}"
    say(f"     {time.monotonic() - began:4.1f} s  event {item.id}: {item.type}{data}, on the "
        f"master {after_ms:.0f} ms after its emit")  # fmt: skip


async def show_last_events(master: MasterClient, say: Callable[[str], None]) -> None:
    """The node's own events, as ``rpc-cli --master ... events --type 'node.*'``."""
    page = await master.events(0, types=["node.*"])
    say(f"the master's node.* events (rpc-cli --master {master.name} events --type 'node.*'):")
    for item in page.events:
        say(f"     {format_event(item)}")


async def job_through_master(master: MasterClient, say: Callable[[str], None]) -> None:
    """A job by label through ganeti-masterd, which calls the node over mutual TLS with
    its own (masterd) certificate; each node's result as it comes."""
    say(f"7. a job           rpc-cli --master {master.name} job submit echo "
        "'{\"value\": \"hello, nodes\"}' --labels demo --follow:")  # fmt: skip
    began = time.monotonic()
    async with asyncio.timeout(JOB_WAIT_S):
        state = await master.submit_job("echo", {"value": "hello, nodes"}, labels=["demo"],
                                        timeout=10)  # fmt: skip
        say(f"     job {state.job_id}: masterd calls each node over TLS, as itself")
        async for item in master.follow_job(state.job_id, wait_s=5):
            shown = repr(item.result) if item.outcome == "ok" else item.error
            say(f"     {time.monotonic() - began:4.1f} s  {item.node}: {item.outcome} {shown}")
            if item.outcome != "ok":
                raise RuntimeError(f"the job's node {item.node} ended {item.outcome}: {shown}")
        final = await master.wait_job(state.job_id)
    ended = ", ".join(f"{n} {outcome}" for outcome, n in final.counts.items() if n)
    say(f"     the job {final.state}: {ended}")
