"""A ganeti-masterd with simulated nodes, for the operator's side (``MasterClient`` and
``rpc-cli --master``): nodes are plain HTTP Register, Heartbeat and Report requests, as
in tests/masterd/daemon."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.masterd.daemon.running import Masterd, events, registration, start_masterd, until

HEARTBEAT_S = 0.5
FNC_ID = "4242:4250:1763800000.123456:9f3a61c2d4e5f607"


class Fleet:
    """A masterd whose nodes are ``up`` (alive while :meth:`beating`), ``gone``
    (missing) and ``never`` (in its nodes file, unknown)."""

    def __init__(self, masterd: Masterd) -> None:
        self.masterd = masterd
        self.up = registration("up", labels=["rack1"], version="1.2.3")
        self.gone = registration("gone", labels=[])
        self._seq = 0

    async def report(self, type_: str, *, fnc_id: str | None = None) -> None:
        """One event from ``up``."""
        self._seq += 1
        body = {"uuid": self.up["uuid"], "spool": "spool-1",
                "events": events(self._seq, type=type_, fnc_id=fnc_id)}  # fmt: skip
        await self.masterd.ok("Report", body)

    @contextlib.asynccontextmanager
    async def beating(self) -> AsyncIterator[None]:
        """``up`` heartbeats while the block runs (and so is alive in it)."""
        task = asyncio.create_task(self._heartbeat_forever())
        try:
            await self.masterd.ok("Heartbeat", self._beat)
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def _beat(self) -> dict[str, Any]:
        return {"uuid": self.up["uuid"], "instance": self.up["instance"], "running": 0}

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S / 4)
            await self.masterd.ok("Heartbeat", self._beat)

    async def last_position(self) -> int:
        """The ``next`` of everything stored so far: what a test reads from."""
        answer = await self.masterd.ok("WaitForEvents", {"from": None, "timeout": 0})
        return int(answer["next"])


async def start_fleet(workdir: Path) -> Fleet:
    """The masterd and its three nodes; stop it with ``fleet.masterd.stop()``."""
    workdir.mkdir(parents=True, exist_ok=True)
    nodes_file = workdir / "nodes.toml"
    nodes_file.write_text('[[node]]\nname = "never"\naddress = "192.0.2.9"\nlabels = ["x"]\n')
    args = ["--heartbeat-s", str(HEARTBEAT_S), "--nodes", str(nodes_file), "--max-wait", "5"]
    masterd = await start_masterd(args, workdir / "masterd")
    try:
        cluster = Fleet(masterd)
        await masterd.ok("Register", cluster.gone)
        await until(lambda: _state_is(masterd, "gone", "missing"))
        await masterd.ok("Register", cluster.up)
    except BaseException:
        await masterd.stop()
        raise
    return cluster


def module_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The body of a module-scoped fixture: one fleet for a module's tests, each of
    which reads events from :meth:`Fleet.last_position` on."""
    cluster = asyncio.run(start_fleet(tmp_path_factory.mktemp("fleet")))
    yield cluster
    asyncio.run(cluster.masterd.stop())


async def _state_is(masterd: Masterd, name: str, state: str) -> bool:
    nodes: dict[str, Any] = await masterd.nodes()
    return bool(nodes[name]["state"] == state)
