"""``make bench``'s ganeti-masterd section (issue 30, "Speed"), runnable alone with
``python -m tests.bench.bench --only masterd``.

One real ganeti-masterd on SQLite (its store on the disk, not a tmpfs), and simulated
nodes in this process speaking plain HTTP over kept connections (rpc_client's lean
transport, one connection per node):

(a) 1,000 nodes register (each Register fsynced before its answer), then heartbeat, all
    at once, in rounds: masterd's CPU time per heartbeat, from /proc/PID/stat (utime +
    stime) over the rounds (goal <= 0.3 ms).
(b) A Report -> a waiting WaitForEvents: from just before the Report is sent to the
    reader's answer, one at a time (goal p50 <= 20 ms, p99 <= 100 ms).
(c) Events per second from 10 nodes reporting as fast as they can (one Report in
    flight each, batches of ``FLOOD_BATCH``), for ``FLOOD_S``; then every event read
    back with WaitForEvents and counted: nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from rpc_client.transport import Endpoint, Pool
from tests.masterd.daemon.running import Masterd, start_masterd

NODES = 1000
HEARTBEAT_ROUNDS = 10
LATENCY_SAMPLES = 200
FLOOD_NODES = 10
FLOOD_BATCH = 100
FLOOD_S = 5.0
#: the per-node event rate masterd allows (--node-events-per-s); (c) measures masterd,
#: not its flood guard
FLOOD_RATE = 1_000_000
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid``, from /proc/PID/stat (in clock ticks there)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Wire:
    """PUTs to the masterd over kept connections, at most ``connections`` at once."""

    def __init__(self, masterd: Masterd, connections: int) -> None:
        self.endpoint = Endpoint("127.0.0.1", masterd.port, None, None)
        self.pool = Pool(max_idle_per_node=connections, max_connections_per_node=connections)

    async def put(self, procedure: str, body: dict[str, Any], timeout_s: float = 60) -> Any:
        answer = await self.pool.request(self.endpoint, f"/{procedure}", orjson.dumps(body),
                                         timeout_s=timeout_s, connect_s=30)  # fmt: skip
        decoded = orjson.loads(answer.body)
        if answer.status != 200:
            raise RuntimeError(f"{procedure}: {answer.status} {decoded}")
        return decoded


def registration(index: int) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "name": f"sim{index:04d}", "address": "127.0.0.1",
            "port": 20000 + index, "boot_id": "bench-boot", "instance": uuid.uuid4().hex,
            "pid": 4242, "version": "bench", "labels": ["bench"],
            "functions": ["echo"]}  # fmt: skip


async def registry_and_heartbeats(masterd: Masterd, wire: Wire) -> dict[str, Any]:
    nodes = [registration(i) for i in range(NODES)]
    before, began = cpu_s(masterd.pid), time.perf_counter()
    await asyncio.gather(*(wire.put("Register", body) for body in nodes))
    register_s, register_cpu_s = time.perf_counter() - began, cpu_s(masterd.pid) - before
    beats = [{"uuid": n["uuid"], "instance": n["instance"], "running": 0} for n in nodes]
    await asyncio.gather(*(wire.put("Heartbeat", beat) for beat in beats))  # warm
    before, began = cpu_s(masterd.pid), time.perf_counter()
    for _ in range(HEARTBEAT_ROUNDS):
        answers = await asyncio.gather(*(wire.put("Heartbeat", beat) for beat in beats))
        assert not any(answer["reregister"] for answer in answers)
    beat_s, beat_cpu_s = time.perf_counter() - began, cpu_s(masterd.pid) - before
    listed = await wire.put("ListNodes", {})
    alive = sum(1 for node in listed["nodes"] if node["state"] == "alive")
    count = NODES * HEARTBEAT_ROUNDS
    return {
        "nodes": NODES, "alive": alive, "register_wall_s": register_s,
        "register_cpu_ms_each": register_cpu_s / NODES * 1e3,
        "heartbeats": count, "heartbeats_per_s": count / beat_s,
        "heartbeat_cpu_ms": beat_cpu_s / count * 1e3,
        "_nodes": nodes,
    }  # fmt: skip


async def report_to_reader(wire: Wire, node: dict[str, Any]) -> dict[str, Any]:
    """A reader long-polls for ``bench.lat``; the node sends one; how long until the
    reader has it."""
    position = (await wire.put("WaitForEvents", {"from": None, "timeout": 0}))["next"]
    lags = []
    for seq in range(1, LATENCY_SAMPLES + 1):
        request = {"from": position, "timeout": 10, "types": ["bench.lat"]}
        reader = asyncio.create_task(wire.put("WaitForEvents", request))
        await asyncio.sleep(0.01)  # it is waiting on masterd by now
        event = {"seq": seq, "type": "bench.lat", "at": time.time(), "data": None, "fnc_id": None}
        sent = time.perf_counter()
        await wire.put("Report", {"uuid": node["uuid"], "spool": "lat", "events": [event]})
        answer = await reader
        lags.append(time.perf_counter() - sent)
        assert [e["seq"] for e in answer["events"]] == [seq], answer
        position = answer["next"]
    return {"p50_ms": percentile(lags, 0.5) * 1e3, "p99_ms": percentile(lags, 0.99) * 1e3,
            "samples": len(lags)}  # fmt: skip


async def flood(wire: Wire, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """``FLOOD_NODES`` nodes reporting as fast as they can; then every event read back."""
    position = (await wire.put("WaitForEvents", {"from": None, "timeout": 0}))["next"]
    end = time.perf_counter() + FLOOD_S
    acked: dict[str, int] = {}

    async def node_reports(node: dict[str, Any]) -> None:
        seq = 0
        while time.perf_counter() < end:
            batch = [{"seq": seq + i, "type": "bench.flood", "at": time.time(),
                      "data": {"n": seq + i}, "fnc_id": None}
                     for i in range(1, FLOOD_BATCH + 1)]  # fmt: skip
            answer = await wire.put("Report", {"uuid": node["uuid"], "spool": "flood",
                                               "events": batch})  # fmt: skip
            seq = acked[node["name"]] = answer["acked"]

    began = time.perf_counter()
    await asyncio.gather(*(node_reports(node) for node in nodes[:FLOOD_NODES]))
    wall_s = time.perf_counter() - began
    seen: set[tuple[str, int]] = set()
    read = 0
    while True:
        request = {"from": position, "timeout": 0, "types": ["bench.flood"]}
        answer = await wire.put("WaitForEvents", request)
        if not answer["events"]:
            break
        read += len(answer["events"])
        seen.update((e["node"], e["seq"]) for e in answer["events"])
        position = answer["next"]
    sent = sum(acked.values())
    return {"nodes": FLOOD_NODES, "batch": FLOOD_BATCH, "acked": sent, "read": read,
            "distinct": len(seen), "wall_s": wall_s, "events_per_s": sent / wall_s,
            "lost": sent - len(seen), "twice": read - len(seen)}  # fmt: skip


async def run() -> dict[str, Any]:
    """The three measurements against one fresh masterd."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="masterd-bench-", dir="/var/tmp") as tmp:
        args = ["--node-events-per-s", str(FLOOD_RATE), "--log-format", "json"]
        masterd = await start_masterd(args, Path(tmp))
        wire = Wire(masterd, NODES)
        try:
            step("masterd: 1,000 nodes register, then heartbeat")
            registry = await registry_and_heartbeats(masterd, wire)
            nodes = registry.pop("_nodes")
            step("masterd: Report -> a waiting WaitForEvents")
            latency = await report_to_reader(wire, nodes[0])
            step(f"masterd: {FLOOD_NODES} nodes reporting as fast as they can")
            flooded = await flood(wire, nodes)
        finally:
            await wire.pool.close()
            await masterd.stop()
    return {"registry": registry, "latency": latency, "flood": flooded,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}  # fmt: skip


def rows(result: dict[str, Any]) -> list[str]:
    r, lat, f = result["registry"], result["latency"], result["flood"]
    load = "/".join(f"{x:.1f}" for x in result["loadavg_before"])
    return [
        f"masterd: {r['nodes']} nodes registered in {r['register_wall_s']:.2f} s "
        f"({r['register_cpu_ms_each']:.2f} ms CPU each), {r['alive']} alive; "
        f"{r['heartbeats']} heartbeats at {r['heartbeats_per_s']:.0f}/s, masterd CPU "
        f"{r['heartbeat_cpu_ms']:.3f} ms a heartbeat (goal <= 0.3)",
        f"masterd: Report -> waiting WaitForEvents p50 / p99: {lat['p50_ms']:.2f} / "
        f"{lat['p99_ms']:.2f} ms (goal <= 20 / 100)",
        f"masterd: {f['nodes']} nodes flooding (batches of {f['batch']}): "
        f"{f['events_per_s']:.0f} events/s; {f['acked']} acked, {f['distinct']} read back, "
        f"{f['lost']} lost, {f['twice']} twice",
        f"masterd: load average before {load}",
    ]


def step(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)
