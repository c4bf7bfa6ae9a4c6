"""``make bench``'s emit -> WaitForEvents row (issue 30, "Speed"), part of the masterd
section (``python -m tests.bench.bench --only masterd``).

A real ganeti-noded with ``--master`` and a real ganeti-masterd (its store on the disk,
not a tmpfs). A function on the node calls ``emit("bench.ping", {"sent": time.time()})``
``PINGS_PER_CALL`` times, ``PING_INTERVAL_S`` apart, in ``CALLS`` calls; a reader
long-polls WaitForEvents with ``types: ["bench.*"]`` and records, per event, the time its
answer arrived minus ``sent`` (one machine, one clock). The path measured: emit's pipe
to the node, the node's spool (fsynced), the Report, masterd's store (fsynced), the
waiting reader's answer.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from masterd.local import LocalNode
from tests.bench.master_daemon import Wire, percentile, step
from tests.helpers import node_env
from tests.masterd.daemon.running import start_masterd

CALLS = 4
PINGS_PER_CALL = 50
PING_INTERVAL_S = 0.05
NODE_NAME = "bench-emit"
#: the whole measurement, node start to the last event read
BUDGET_S = 120.0


async def run() -> dict[str, Any]:
    """One fresh masterd and one fresh node; the lags of every ``bench.ping``."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emit-bench-", dir="/var/tmp") as tmp:
        masterd = await start_masterd(["--log-format", "json"], Path(tmp) / "m")
        wire = Wire(masterd, 4)
        try:
            args = ["--functions", "tests.bench.emit_functions", "--master", masterd.address,
                    "--name", NODE_NAME]  # fmt: skip
            node = await LocalNode.start(args, env=node_env(), workdir=Path(tmp) / "n")
            try:
                step("masterd: emit on a real node -> a waiting WaitForEvents")
                async with asyncio.timeout(BUDGET_S):
                    lags = await emit_to_reader(wire, node)
            finally:
                await node.stop()
        finally:
            await wire.pool.close()
            await masterd.stop()
    return {"p50_ms": percentile(lags, 0.5) * 1e3, "p99_ms": percentile(lags, 0.99) * 1e3,
            "max_ms": max(lags) * 1e3, "samples": len(lags), "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}  # fmt: skip


async def emit_to_reader(wire: Wire, node: LocalNode) -> list[float]:
    await until_alive(wire)
    position = (await wire.put("WaitForEvents", {"from": None, "timeout": 0}))["next"]
    async with node.client() as client:  # warm: the function's first process, imports
        await client.start_function("emit_pings", {"count": 3, "interval_s": 0.01,
                                                   "kind": "bench.warm"}, timeout=30)  # fmt: skip
    lags: list[float] = []
    expected = CALLS * PINGS_PER_CALL
    reader = asyncio.create_task(read_pings(wire, position, expected, lags))
    async with node.client() as client:
        for _ in range(CALLS):
            fn_args = {"count": PINGS_PER_CALL, "interval_s": PING_INTERVAL_S}
            state = await client.start_function("emit_pings", fn_args, timeout=60)
            assert state.finished, state
    await asyncio.wait_for(reader, 30)
    return lags


async def read_pings(wire: Wire, position: int, expected: int, lags: list[float]) -> None:
    while len(lags) < expected:
        request = {"from": position, "timeout": 5, "types": ["bench.*"]}
        answer = await wire.put("WaitForEvents", request)
        arrived = time.time()
        lags.extend(arrived - e["data"]["sent"] for e in answer["events"]
                    if e["type"] == "bench.ping")  # fmt: skip
        position = answer["next"]


async def until_alive(wire: Wire, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        nodes = (await wire.put("ListNodes", {}))["nodes"]
        if any(n["name"] == NODE_NAME and n["state"] == "alive" for n in nodes):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{NODE_NAME} not alive at masterd in {timeout_s} s")


def rows(result: dict[str, Any]) -> list[str]:
    load = "/".join(f"{x:.1f}" for x in result["loadavg_before"])
    return [
        f"masterd: emit on a node -> waiting WaitForEvents p50 / p99: {result['p50_ms']:.2f} / "
        f"{result['p99_ms']:.2f} ms (goal <= 20 / 100), max {result['max_ms']:.2f} ms, "
        f"{result['samples']} events; load average before {load}",
    ]
