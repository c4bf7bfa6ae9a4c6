"""A real ganeti-noded with ``--master``, and what masterd says about it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from masterd.local import LocalNode
from rpc_client.protocol import CallState
from tests.helpers import node_env
from tests.masterd.daemon.running import Masterd, until

FUNCTIONS = "tests.functions,tests.noded.master.functions"


def master_args(masters: Sequence[str], *args: str, name: str = "node-a") -> list[str]:
    return ["--functions", FUNCTIONS, "--master", ",".join(masters), "--name", name, *args]


async def start_node(
    masters: Sequence[str], workdir: Path, *args: str, name: str = "node-a"
) -> LocalNode:
    """A ganeti-noded in ``workdir`` (its state directory kept across restarts)."""
    return await LocalNode.start(master_args(masters, *args, name=name), env=node_env(),
                                 workdir=workdir)  # fmt: skip


@contextlib.asynccontextmanager
async def node_with_master(
    masters: Sequence[str], workdir: Path, *args: str, name: str = "node-a"
) -> AsyncIterator[LocalNode]:
    node = await start_node(masters, workdir, *args, name=name)
    try:
        yield node
    finally:
        if node.proc.poll() is None:
            await node.stop()


async def node_state(masterd: Masterd, name: str) -> str | None:
    node = (await masterd.nodes()).get(name)
    return None if node is None else str(node["state"])


async def wait_state(masterd: Masterd, name: str, state: str, timeout_s: float = 20.0) -> None:
    async def reached() -> bool:
        return await node_state(masterd, name) == state

    await until(reached, timeout_s)


async def events_of(masterd: Masterd, types: list[str] | None = None) -> list[dict[str, Any]]:
    """Every event stored so far (of those types), page after page."""
    found: list[dict[str, Any]] = []
    position = 0
    while True:
        body = {"from": position, "timeout": 0, "types": types}
        answer = await masterd.ok("WaitForEvents", body)
        if not answer["events"]:
            return found
        found.extend(answer["events"])
        position = answer["next"]


async def wait_events(
    masterd: Masterd, count: int, types: list[str], timeout_s: float = 20.0
) -> list[dict[str, Any]]:
    """At least ``count`` events of ``types``, waiting for them."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = await events_of(masterd, types)
        return len(found) >= count

    await until(enough, timeout_s)
    return found


async def run_call(node: LocalNode, fn_name: str, fn_args: dict[str, Any]) -> CallState:
    """A call that must finish (within 20 s)."""
    async with node.client() as client:
        state = await client.start_function(fn_name, fn_args, timeout=20)
    assert state.finished, state
    return state
