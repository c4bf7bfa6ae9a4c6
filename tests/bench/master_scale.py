"""``make bench``'s stores side by side (issue 32, "Speed and scale"), run with the masterd
section (``python -m tests.bench.bench --only masterd``) or alone
(``python -m tests.bench.master_scale``).

One real ganeti-masterd on SQLite (on the disk, ``/var/tmp``); then one real PostgreSQL
(``tests.postgres``, but with ``fsync=on``: a production server's commits) and one, then
two, real ganeti-masterd on one fresh database each time.  For each setup, the same
three loads, spread round-robin over the masters:

(a) heartbeats: 1,000 simulated nodes registered, then heartbeating all at once in
    rounds;
(b) events: ``FLOOD_NODES`` nodes reporting batches of ``FLOOD_BATCH`` as fast as they
    can for ``FLOOD_S``, then every event read back through the first master;
(c) job node-starts: the 1,000 fakes of :mod:`tests.bench.fleet` (answering after
    50-500 ms), split into one label per master; ``JOBS_PER_MASTER`` jobs submitted to
    each master at once over its label, followed to their ends.

Reported for each: the rate (over the wall time), and the CPU a unit costs, masterd's
(all masters, utime + stime of /proc/PID/stat) and PostgreSQL's (the postmaster and all
its backends, psutil) apart: those CPU costs, not this 2-CPU machine's rates, are what
doc/performance.md's arithmetic for 10,000 and 50,000 nodes uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil

from tests.bench import fleet
from tests.bench.master_daemon import FLOOD_RATE, Wire, cpu_s, registration, step
from tests.bench.master_job import follow
from tests.bench.master_job import registration as fake_registration
from tests.masterd.daemon.running import Masterd, start_masterd
from tests.postgres import PostgresServer, require_postgres

NODES = 1000
HEARTBEAT_ROUNDS = 5
FLOOD_NODES = 10
FLOOD_BATCH = 100
FLOOD_S = 3.0
FAKES = 1000
JOBS_PER_MASTER = 3


class Meter:
    """CPU seconds of the masters and of PostgreSQL over a ``with`` block, and its wall."""

    def __init__(self, masters: list[Masterd], postmaster: int | None) -> None:
        self.masters, self.postmaster = masters, postmaster
        self.masterd_s = self.postgres_s = self.wall_s = 0.0

    def _postgres_cpu_s(self) -> float:
        if self.postmaster is None:  # SQLite: the store is masterd's own threads
            return 0.0
        root = psutil.Process(self.postmaster)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    @contextlib.contextmanager
    def measuring(self) -> Iterator[Meter]:
        masterd, postgres = sum(cpu_s(m.pid) for m in self.masters), self._postgres_cpu_s()
        began = time.perf_counter()
        yield self
        self.wall_s = time.perf_counter() - began
        self.masterd_s = sum(cpu_s(m.pid) for m in self.masters) - masterd
        self.postgres_s = self._postgres_cpu_s() - postgres

    def per(self, units: int) -> dict[str, float]:
        return {"per_s": units / self.wall_s, "masterd_cpu_ms": self.masterd_s / units * 1e3,
                "postgres_cpu_ms": self.postgres_s / units * 1e3}  # fmt: skip


async def heartbeats(wires: list[Wire], meter: Meter) -> tuple[dict[str, Any], list[Any]]:
    nodes = [registration(i) for i in range(NODES)]
    await asyncio.gather(*(wires[i % len(wires)].put("Register", n) for i, n in enumerate(nodes)))
    beats = [{"uuid": n["uuid"], "instance": n["instance"], "running": 0} for n in nodes]

    async def one_round() -> None:
        await asyncio.gather(*(wires[i % len(wires)].put("Heartbeat", b)
                               for i, b in enumerate(beats)))  # fmt: skip

    await one_round()  # warm
    with meter.measuring():
        for _ in range(HEARTBEAT_ROUNDS):
            await one_round()
    return meter.per(NODES * HEARTBEAT_ROUNDS), nodes


async def events(wires: list[Wire], nodes: list[Any], meter: Meter) -> dict[str, Any]:
    position = (await wires[0].put("WaitForEvents", {"from": None, "timeout": 0}))["next"]
    acked: dict[str, int] = {}

    async def reports(index: int, end: float) -> None:
        node, wire, seq = nodes[index], wires[index % len(wires)], 0
        while time.perf_counter() < end:
            batch = [{"seq": seq + i, "type": "bench.scale", "at": time.time(), "data": None,
                      "fnc_id": None} for i in range(1, FLOOD_BATCH + 1)]  # fmt: skip
            answer = await wire.put("Report", {"uuid": node["uuid"], "spool": "scale",
                                               "events": batch})  # fmt: skip
            seq = acked[node["name"]] = answer["acked"]

    with meter.measuring():
        end = time.perf_counter() + FLOOD_S
        await asyncio.gather(*(reports(i, end) for i in range(FLOOD_NODES)))
    sent = sum(acked.values())
    read = await _read_back(wires[0], position)
    return {**meter.per(sent), "acked": sent, "read": read}


async def _read_back(wire: Wire, position: Any) -> int:
    read = 0
    while True:
        request = {"from": position, "timeout": 0, "types": ["bench.scale"]}
        answer = await wire.put("WaitForEvents", request)
        if not answer["events"]:
            return read
        read, position = read + len(answer["events"]), answer["next"]


async def job_starts(wires: list[Wire], meter: Meter) -> dict[str, Any]:
    async with fleet.fake_fleet(FAKES, 0, None) as ports:
        nodes = fleet_nodes(ports["answering"], len(wires))
        await asyncio.gather(*(wires[0].put("Register", body) for body in nodes))
        with meter.measuring():
            ends = await asyncio.gather(*(
                _one_job(wires[j % len(wires)], f"scale{j % len(wires)}")
                for j in range(JOBS_PER_MASTER * len(wires))))  # fmt: skip
    outcomes: dict[str, int] = {}
    for end in ends:
        for outcome, count in end["counts"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    return {**meter.per(FAKES * JOBS_PER_MASTER), "ok": outcomes.get("ok", 0),
            "outcomes": outcomes, "expected": FAKES * JOBS_PER_MASTER}  # fmt: skip


def fleet_nodes(ports: list[int], masters: int) -> list[dict[str, Any]]:
    from masterd.node import Node

    bodies = []
    for i, port in enumerate(ports):
        body = fake_registration(Node(f"fake{i}", "127.0.0.1", port))
        bodies.append({**body, "labels": [f"scale{i % masters}"]})
    return bodies


async def _one_job(wire: Wire, label: str) -> dict[str, Any]:
    body = {"fn_name": "echo", "fn_args": {"value": "x"}, "labels": [label],
            "timeout": fleet.TIMEOUT_S}  # fmt: skip
    submitted = await wire.put("SubmitJob", body)
    return await follow(wire, submitted["job_id"], time.monotonic(), fleet.TIMEOUT_S + 1)


@contextlib.asynccontextmanager
async def masters(
    server: PostgresServer | None, count: int, tmp: Path
) -> AsyncIterator[list[Masterd]]:
    """``count`` masterd on a fresh database of ``server``, or one on SQLite."""
    args = ["--node-events-per-s", str(FLOOD_RATE), "--log-format", "json"]
    if server is not None:
        args += ["--store", await asyncio.to_thread(server.create_database)]
    started: list[Masterd] = []
    try:
        for i in range(count):
            started.append(await start_masterd(args, tmp / f"m{count}-{i}"))
        yield started
    finally:
        for masterd in started:
            await masterd.stop()


async def one_setup(server: PostgresServer | None, count: int, tmp: Path) -> dict[str, Any]:
    store = "SQLite" if server is None else "PostgreSQL"
    async with masters(server, count, tmp / f"{store}-{count}") as started:
        wires = [Wire(m, NODES) for m in started]
        meter = Meter(started, None if server is None else server.postmaster_pid())
        try:
            step(f"{store}, {count} masterd: 1,000 nodes heartbeat")
            beats, nodes = await heartbeats(wires, meter)
            step(f"{store}, {count} masterd: {FLOOD_NODES} nodes report events")
            flooded = await events(wires, nodes, meter)
            step(f"{store}, {count} masterd: {JOBS_PER_MASTER} jobs a master, 1,000 fakes")
            jobs = await job_starts(wires, meter)
        finally:
            for wire in wires:
                await wire.pool.close()
    return {"store": store, "masters": count, "heartbeats": beats, "events": flooded,
            "jobs": jobs}  # fmt: skip


async def run() -> dict[str, Any]:
    """SQLite with one masterd, then PostgreSQL with one and two (where it is
    installed: otherwise ``skipped`` says why)."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="masterd-scale-", dir="/var/tmp") as tmp:
        setups = [await one_setup(None, 1, Path(tmp))]
        try:
            bindir = require_postgres()
        except BaseException as skip:  # pytest's Skipped is a BaseException
            return {"setups": setups, "skipped": str(skip), "loadavg_before": load_before}
        server = PostgresServer(bindir, fsync=True)
        try:
            await asyncio.to_thread(server.start)
            setups += [await one_setup(server, count, Path(tmp)) for count in (1, 2)]
        finally:
            await asyncio.to_thread(server.remove)
    return {"setups": setups, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def rows(result: dict[str, Any]) -> list[str]:
    lines = []
    for setup in result["setups"]:
        head = f"store {setup['store']}, {setup['masters']} masterd:"
        for name, unit in (("heartbeats", "a heartbeat"), ("events", "an event"),
                           ("jobs", "a job node")):  # fmt: skip
            m = setup[name]
            lines.append(f"{head} {name} {m['per_s']:.0f}/s, CPU {unit}: masterd "
                         f"{m['masterd_cpu_ms']:.3f} ms, "
                         f"PostgreSQL {m['postgres_cpu_ms']:.3f} ms")  # fmt: skip
        if setup["store"] == "SQLite":
            lines[-3:] = [line.replace(", PostgreSQL 0.000 ms", "") for line in lines[-3:]]
        ev, jobs = setup["events"], setup["jobs"]
        lines.append(f"{head} {ev['acked']} events acked, {ev['read']} read back; "
                     f"{jobs['ok']} of {jobs['expected']} job nodes ok "
                     f"({jobs['outcomes']})")  # fmt: skip
    if "skipped" in result:
        lines.append(f"store PostgreSQL: not measured ({result['skipped']})")
    load = "/".join(f"{x:.1f}" for x in result["loadavg_before"])
    return [*lines, f"stores: load average before {load}"]


def _main() -> None:
    print("\n".join(rows(asyncio.run(run()))))


if __name__ == "__main__":
    _main()
