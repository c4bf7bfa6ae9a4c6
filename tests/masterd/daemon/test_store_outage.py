"""The store going away (issue 32, item 5): PostgreSQL stopped (``pg_ctl stop -m fast``)
under a real ganeti-masterd while simulated nodes heartbeat and report, then started
again: 503 ``StoreUnavailable`` with ``Retry-After`` meanwhile, never a 500 nor a crash,
and every event acknowledged before, during or after is stored."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.masterd.daemon.running import Masterd, events, registration, run_masterd, until
from tests.postgres import PostgresServer

OUTAGE_S = 3.0


class Node:
    """A simulated node: heartbeats, and reports its spool until acknowledged."""

    def __init__(self, masterd: Masterd, name: str) -> None:
        self.masterd, self.body = masterd, registration(name)
        self.next_seq, self.acked = 1, 0
        self.statuses: list[int] = []

    async def run(self, stop: asyncio.Event) -> None:
        await self.masterd.ok("Register", self.body)
        while not stop.is_set():
            await self._heartbeat()
            await self._report()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await stop.wait()

    async def _heartbeat(self) -> None:
        body = {"uuid": self.body["uuid"], "instance": self.body["instance"], "running": 0}
        status, _, _ = await self.masterd.put("Heartbeat", body, timeout_s=15)
        self.statuses.append(status)

    async def _report(self) -> None:
        """Everything not yet acknowledged, plus one new event."""
        self.next_seq += 1
        seqs = range(self.acked + 1, self.next_seq)
        body = {"uuid": self.body["uuid"], "spool": "s", "events": events(*seqs)}
        status, answer, headers = await self.masterd.put("Report", body, timeout_s=15)
        self.statuses.append(status)
        if status == 200:
            self.acked = max(self.acked, int(answer["acked"]))
        else:
            assert status == 503 and answer["error"]["type"] == "StoreUnavailable", answer
            assert int(headers["Retry-After"]) >= 1


async def stored_seqs(masterd: Masterd, name: str) -> list[int]:
    answer: dict[str, Any] = await masterd.ok(
        "WaitForEvents", {"from": 0, "timeout": 0, "types": ["disk.*"], "nodes": [name]}
    )
    return sorted(e["seq"] for e in answer["events"])


@pytest.mark.slow
async def test_a_store_outage_is_503_then_nothing_acknowledged_is_lost(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path
) -> None:
    args = ["--store", postgres_url, "--heartbeat-s", "1"]
    async with run_masterd(args, workdir=tmp_path) as masterd:
        nodes = [Node(masterd, f"n{i}") for i in range(4)]
        stop = asyncio.Event()
        running = [asyncio.create_task(node.run(stop)) for node in nodes]
        try:
            await until(lambda: _all_acked_some(nodes))
            await asyncio.to_thread(postgres_server.stop)
            stopped = time.monotonic()
            await until(lambda: _all_refused_some(nodes), timeout_s=OUTAGE_S * 3)
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
        finally:
            await asyncio.to_thread(postgres_server.start)
        await until(lambda: _all_caught_up(nodes), timeout_s=30)
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*running)
        assert masterd.proc.poll() is None, "masterd exited"
        for node in nodes:
            assert 500 not in node.statuses and set(node.statuses) <= {200, 503}
            stored = await stored_seqs(masterd, node.body["name"])
            assert stored[: node.acked] == list(range(1, node.acked + 1))
        assert "Traceback" not in masterd.log_text()


async def _all_acked_some(nodes: list[Node]) -> bool:
    return all(node.acked >= 2 for node in nodes)


async def _all_refused_some(nodes: list[Node]) -> bool:
    return all(503 in node.statuses for node in nodes)


async def _all_caught_up(nodes: list[Node]) -> bool:
    """Every node had a Report acknowledged after the outage."""
    return all(node.statuses[-1] == 200 and node.acked >= node.next_seq - 2 for node in nodes)
