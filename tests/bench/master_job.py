"""``make bench``'s 1,000-node job through ganeti-masterd (issue 31, "Speed"), run with
the masterd section (``python -m tests.bench.bench --only masterd``).

The mixed fake fleet of :mod:`tests.bench.fleet` (1,000 fake nodes answering
StartFunction after 50-500 ms, 10 silent ports, 10 refused ones), first called from this
process with the library's ``call_many`` (:func:`tests.bench.fleet.measure`), then
registered with one real ganeti-masterd on SQLite (store on the disk, ``/var/tmp``) under
a label of their own, and one ``SubmitJob`` by that label followed with ``WaitForJob``
until the job ends.  Reported: masterd's CPU per node (utime + stime of /proc/PID/stat,
from just before SubmitJob to the job's end, the store's threads and the WaitForJob
answers included), when the last good result reached the follower beside the library's
on the same fleet, when the last node was named (bound: the job's timeout + 1 s), every
node named once.  Then the same job again, for the store's disk writes per node
(``write_bytes`` of /proc/PID/io) and fsyncs per node (``strace -c`` attached to
masterd's threads other than the event loop's, which are the store's: the loop itself is
not traced; the tracing costs the store's threads about 0.1 ms of CPU a node, which is
why the first job, whose CPU is reported, is not traced).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from masterd.local import free_port
from masterd.node import Node
from tests.bench import fleet
from tests.bench.master_daemon import Wire, cpu_s, step
from tests.masterd.daemon.running import Masterd, start_masterd

FAKES = 1000
SILENT = 10
REFUSED = 10
LABEL = "bench-job"
WAIT_S = 5.0
#: the follower gives up this long after the job's bound
SLACK_S = 30.0


def fleet_nodes(ports: dict[str, Any]) -> list[Node]:
    """The same nodes for the library and for masterd: fakes, silent and refused."""
    nodes = [Node(f"fake{i}", "127.0.0.1", port) for i, port in enumerate(ports["answering"])]
    nodes += [Node(f"silent{i}", "127.0.0.1", port) for i, port in enumerate(ports["silent"])]
    nodes += [Node(f"refused{i}", "127.0.0.1", free_port()) for i in range(REFUSED)]
    return nodes


def registration(node: Node) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "name": node.name, "address": node.address,
            "port": node.port, "boot_id": "bench-boot", "instance": uuid.uuid4().hex,
            "pid": 4242, "version": "bench", "labels": [LABEL],
            "functions": ["echo"]}  # fmt: skip


def disk_write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def fsyncs_counted(pid: int, into: dict[str, int]) -> Iterator[None]:
    """``strace -c`` on every thread of ``pid`` but the event loop's (the store's
    writer and reader); the fsync-family calls counted into ``into``."""
    threads = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    if shutil.which("strace") is None or not threads:
        yield
        return
    out = Path(tempfile.mkstemp(prefix="masterd-job-strace-")[1])
    argv = ["strace", "-c", "-e", "trace=fsync,fdatasync", "-o", str(out)]
    for tid in threads:
        argv += ["-p", str(tid)]
    tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached by now
    try:
        yield
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
        summary = re.findall(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$",
                             out.read_text(), re.M)  # fmt: skip
        into.update({syscall: int(calls) for calls, syscall in summary if syscall != "total"})
        out.unlink()


async def follow(wire: Wire, job_id: str, began: float, bound_s: float) -> dict[str, Any]:
    """WaitForJob from result 0 until the job ends: when each node was named."""
    position, named, last_ok, last, answers = 0, {}, 0.0, 0.0, 0
    twice: list[str] = []
    while time.monotonic() - began < bound_s + SLACK_S:
        request = {"job_id": job_id, "timeout": WAIT_S, "results_from": position}
        answer = await wire.put("WaitForJob", request, timeout_s=WAIT_S + 10)
        answers += 1
        now = time.monotonic() - began
        for item in answer["results"]["items"]:
            if item["node"] in named:
                twice.append(item["node"])
            named[item["node"]] = item["outcome"]
            last = now
            if item["outcome"] == "ok":
                last_ok = now
        position = answer["results"]["next"]
        if answer["state"] in ("finished", "aborted"):
            return {"named": named, "last_ok_s": last_ok, "last_named_s": last,
                    "counts": answer["counts"], "state": answer["state"],
                    "twice": twice, "wait_answers": answers}  # fmt: skip
    raise RuntimeError(f"job {job_id} not ended {bound_s + SLACK_S} s after its submit")


async def one_job(wire: Wire, masterd: Masterd, nodes: list[Node]) -> dict[str, Any]:
    """SubmitJob by the fleet's label, followed until it ends: its timings, and masterd's
    CPU and disk writes over it."""
    cpu_before, disk_before = cpu_s(masterd.pid), disk_write_bytes(masterd.pid)
    began = time.monotonic()
    submitted = await wire.put("SubmitJob", {
        "fn_name": "echo", "fn_args": {"value": "x"}, "labels": [LABEL],
        "timeout": fleet.TIMEOUT_S})  # fmt: skip
    submit_s = time.monotonic() - began
    followed = await follow(wire, submitted["job_id"], began, fleet.TIMEOUT_S + 1)
    return {**followed, "submit_s": submit_s, "cpu_s": cpu_s(masterd.pid) - cpu_before,
            "disk": disk_write_bytes(masterd.pid) - disk_before}  # fmt: skip


async def job_through_masterd(masterd: Masterd, nodes: list[Node]) -> dict[str, Any]:
    """Two jobs on the fleet: the first measured (CPU, timings), the second with its
    fsyncs counted (strace on the store's threads costs them about 0.1 ms of CPU a node,
    which the first does not pay)."""
    wire = Wire(masterd, len(nodes))
    try:
        step(f"masterd job: {len(nodes)} nodes register")
        await asyncio.gather(*(wire.put("Register", registration(n)) for n in nodes))
        step("masterd job: SubmitJob by label, WaitForJob until it ends")
        followed = await one_job(wire, masterd, nodes)
        step("masterd job: the same job again, its fsyncs counted")
        fsyncs: dict[str, int] = {}
        with fsyncs_counted(masterd.pid, fsyncs):
            traced = await one_job(wire, masterd, nodes)
    finally:
        await wire.pool.close()
    named = followed.pop("named")
    outcomes = {o: sum(1 for v in named.values() if v == o) for o in set(named.values())}
    return {**followed, "nodes": len(nodes), "named": len(named), "outcomes": outcomes,
            "cpu_ms_per_node": followed.pop("cpu_s") / len(nodes) * 1e3,
            "disk_kib_per_node": traced["disk"] / len(nodes) / 1024,
            "fsyncs": sum(fsyncs.values()) if fsyncs else None,
            "bound_s": fleet.TIMEOUT_S + 1}  # fmt: skip


async def run() -> dict[str, Any]:
    """The library's call_many, then one masterd job, on one fake fleet."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="masterd-job-bench-", dir="/var/tmp") as tmp:
        async with fleet.fake_fleet(FAKES, SILENT, None) as ports:
            nodes = fleet_nodes(ports)
            step(f"masterd job: the library's call_many on the same {len(nodes)} nodes")
            library = await fleet.measure(nodes, FAKES)
            masterd = await start_masterd(["--log-format", "json"], Path(tmp))
            try:
                job = await job_through_masterd(masterd, nodes)
            finally:
                await masterd.stop()
    return {"library": library, "job": job, "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}  # fmt: skip


def rows(result: dict[str, Any]) -> list[str]:
    lib, job = result["library"], result["job"]
    load = "/".join(f"{x:.1f}" for x in result["loadavg_before"])
    fsyncs = "not counted" if job["fsyncs"] is None else (
        f"{job['fsyncs']} fsyncs ({job['fsyncs'] / job['nodes']:.3f} a node)")  # fmt: skip
    return [
        f"masterd job: {job['nodes']} nodes, {job['state']}, masterd CPU "
        f"{job['cpu_ms_per_node']:.3f} ms a node (goal <= 0.5; the library in-process "
        f"{lib['cpu_ms_per_node']:.3f})",
        f"masterd job: last good result at {job['last_ok_s']:.3f} s, the library's at "
        f"{lib['last_ok_s']:.3f} s (goal: within 0.5 s); last named at "
        f"{job['last_named_s']:.3f} s (bound {job['bound_s']:.0f}); {job['named']} named, "
        f"{len(job['twice'])} twice; {job['outcomes']}",
        f"masterd job: store {job['disk_kib_per_node']:.2f} KiB written a node, {fsyncs}; "
        f"SubmitJob answered in {job['submit_s'] * 1e3:.0f} ms, {job['wait_answers']} "
        f"WaitForJob answers; load average before {load}",
    ]
