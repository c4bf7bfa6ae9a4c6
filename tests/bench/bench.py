"""``make bench``: noded measured side by side with its references, in one run.

The client is this process; every daemon is a process of its own.  Prints one table and
the ratios, and writes the numbers as JSON (``--out``).  Timings live here, never in tests.

All targets run at once and are measured in turns (``--rounds``), so that a slower
minute of a shared machine falls on every target alike rather than on whichever was
measured then.

1. noded (--spawn fork), trivial ``echo``: sequential latency p50/p99, and the whole
   machine's CPU time per call meanwhile (client, daemon, fork server, function processes:
   one after another, a call can take no less than that divided by the CPUs);
   throughput at 1, 8, 32 and 128 concurrent callers.
2. Reference A, "exec per call": noded --spawn exec, the same calls.
3. Reference B, "HTTP floor": aiohttp+uvloop answering the same request with no process.
   Reference C, "process floor" (``tests/bench/process_floor.py``): aiohttp+uvloop and a
   minimal fork server with 4 children forked ahead, newline-framed pipes, nothing else:
   what a process per call costs with nothing of noded's on top (issue 21's goals:
   noded's p50 within 1.25x of it, its throughput at 32 callers at least 0.8x).
4. Wake-up latency: from the function writing its result to WaitForFunction's answer;
   and its floor: aiohttp answering a pending request when a helper process writes the
   time to a pipe (the same two wake-ups, nothing else).
5. Memory: daemon RSS idle and with 500 functions running; USS of one function process.
6. The audit log's cost: echo with and without ``--audit-log`` (on the disk, not a tmpfs:
   an fsync per start, or per group of starts that come together), in turns: p50
   latency, throughput at 32 callers, and fsyncs per start.
7. The master's fan-out (``tests/bench/fleet.py``): one gather to 1,000 fake nodes, 10
   real daemons, 10 refused and 10 silent ports, and again over mutual TLS: the master's
   CPU and memory per node, when the last good result came and the last node was named.
8. Scale: 1,000 ``sleep(5)`` started with timeout 0, then waited for concurrently; twice
   in the same daemon, since on a VM the first run may be the first to touch some of the
   guest's memory, which costs a host fault per page (see doc/performance.md).
9. ganeti-masterd (``tests/bench/master_daemon.py``; alone: ``--only masterd``): CPU per
   heartbeat of 1,000 nodes, Report -> WaitForEvents latency, events/s from 10 nodes;
   a 1,000-node job through masterd beside call_many (``tests/bench/master_job.py``);
   the stores side by side (``tests/bench/master_scale.py``): heartbeats, events and job
   nodes a second and their CPU (masterd's, PostgreSQL's) on SQLite, and on PostgreSQL
   with one and with two masterd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from masterd.local import LocalNode, free_port
from tests.bench import emit_latency, master_daemon, master_job, master_scale, output
from tests.bench.cpu import CallCpu, CpuMeter, CpuUse, ServerCpu, cpu_summary
from tests.helpers import lasting_zombies, node_env

ECHO = orjson.dumps({"fn_name": "echo", "fn_args": {"value": "x"}, "timeout": 10})
CONCURRENCY = (1, 8, 32, 128)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Target:
    """Something answering PUT /StartFunction on a port."""

    def __init__(self, name: str, port: int, pid: int) -> None:
        self.name, self.port, self.pid = name, port, pid
        self.url = f"http://127.0.0.1:{port}"


async def put(session: aiohttp.ClientSession, url: str, body: bytes) -> Any:
    async with session.put(url, data=body, timeout=aiohttp.ClientTimeout(total=60)) as r:
        answer = orjson.loads(await r.read())
        if r.status != 200 or answer.get("error"):
            raise RuntimeError(f"{url}: {r.status} {answer}")
        return answer


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 0.5) * 1e3,
        "p99_ms": percentile(samples, 0.99) * 1e3,
        "samples": len(samples),
    }


async def sequential_latency(target: Target, calls: int) -> tuple[list[float], CpuUse]:
    """Each call's latency, and what the whole machine's CPUs did meanwhile."""
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # warm up the connection and the pool
            await put(session, target.url + "/StartFunction", ECHO)
        samples = []
        meter = CpuMeter()
        for _ in range(calls):
            began = time.perf_counter()
            await put(session, target.url + "/StartFunction", ECHO)
            samples.append(time.perf_counter() - began)
    return samples, meter.read()


async def throughput(target: Target, callers: int, seconds: float) -> float:
    done, elapsed_s = await calls_made(target, callers, seconds)
    return done / elapsed_s


async def calls_made(target: Target, callers: int, seconds: float) -> tuple[int, float]:
    """Echo calls made by ``callers`` at once for ``seconds``: (how many, in what time)."""
    connector = aiohttp.TCPConnector(limit=callers)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.perf_counter() + seconds
        done = 0

        async def caller() -> None:
            nonlocal done
            while time.perf_counter() < end:
                await put(session, target.url + "/StartFunction", ECHO)
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return done, time.perf_counter() - began


WAKE_DELAY_S = 0.02


async def wake_up_latency(target: Target, samples: int) -> list[float]:
    body = orjson.dumps({"fn_name": "stamp", "fn_args": {"delay": WAKE_DELAY_S}, "timeout": 0})
    lags = []
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            started = await put(session, target.url + "/StartFunction", body)
            wait = orjson.dumps({"fnc_id": started["fnc_id"], "timeout": 10})
            done = await put(session, target.url + "/WaitForFunction", wait)
            lags.append(time.time() - done["result"])
    return lags


async def wake_up_floor(target: Target, samples: int) -> list[float]:
    body = orjson.dumps({"delay": WAKE_DELAY_S})
    lags = []
    async with aiohttp.ClientSession() as session:
        for _ in range(samples):
            done = await put(session, target.url + "/Stamp", body)
            lags.append(time.time() - done["result"])
    return lags


async def memory(target: Target, running: int) -> dict[str, float]:
    daemon = psutil.Process(target.pid)
    await asyncio.sleep(1)
    idle = daemon.memory_info().rss
    body = orjson.dumps({"fn_name": "sleep", "fn_args": {"seconds": 8}, "timeout": 0})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        states = await asyncio.gather(
            *(put(session, target.url + "/StartFunction", body) for _ in range(running))
        )
        busy = daemon.memory_info().rss
        one = int(states[0]["fnc_id"].split(":")[1])
        uss = psutil.Process(one).memory_full_info().uss
        for state in states:
            wait = orjson.dumps({"fnc_id": state["fnc_id"], "timeout": 30})
            await put(session, target.url + "/WaitForFunction", wait)
    mib = 1024 * 1024
    return {
        "idle_rss_mib": idle / mib,
        f"rss_{running}_running_mib": busy / mib,
        "function_uss_mib": uss / mib,
    }


async def scale(target: Target, count: int, seconds: float) -> dict[str, float]:
    body = orjson.dumps({"fn_name": "sleep", "fn_args": {"seconds": seconds}, "timeout": 0})
    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        states = await asyncio.gather(
            *(put(session, target.url + "/StartFunction", body) for _ in range(count))
        )
        started = time.perf_counter() - began
        waits = [orjson.dumps({"fnc_id": s["fnc_id"], "timeout": 60}) for s in states]
        done = await asyncio.gather(
            *(put(session, target.url + "/WaitForFunction", w) for w in waits)
        )
    wall_s = time.perf_counter() - began
    finished = sum(1 for d in done if d["finished"] and d["result"] == seconds)
    return {
        "started": len(states),
        "finished": finished,
        "start_s": started,
        "wall_s": wall_s,
        # A call is answered at its frame, before its process has exited and been reaped:
        # a zombie caught in between (a run saw one, gone milliseconds later) is no leak.
        "zombies": len(await lasting_zombies(target.pid, settle_s=2.0)),
    }


@contextlib.asynccontextmanager
async def noded(spawn: str, workdir: Path, *extra: str) -> AsyncIterator[Target]:
    args = [
        "--functions",
        "tests.bench.functions",
        "--spawn",
        spawn,
        "--max-functions",
        "2000",
        "--log-format",
        "json",
        *extra,
    ]
    async with LocalNode.running(args, env=node_env(), workdir=workdir / spawn) as node:
        yield Target(f"noded {spawn}", node.port, node.pid)


@contextlib.asynccontextmanager
async def http_floor(module: str = "tests.bench.floor") -> AsyncIterator[Target]:
    """A reference server of ``module`` (the HTTP floor, or the process floor)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(port)],
        stdout=subprocess.PIPE,
        env={**os.environ, **node_env()},
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        yield Target(module, port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


async def measure_in_turns(
    targets: dict[str, Target], calls: int, seconds: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """Latency and throughput of every target, measured one round of each in turn; and at
    32 callers, the CPU a call costs (the machine, the server, its fork server)."""
    latency: dict[str, list[float]] = {name: [] for name in targets}
    cpu = {name: CpuUse() for name in targets}
    cpu_32 = {name: CallCpu() for name in targets}
    rates: dict[str, dict[int, list[float]]] = {
        name: {n: [] for n in CONCURRENCY} for name in targets
    }
    per_round = -(-calls // rounds)
    for turn in range(rounds):
        step(f"latency and throughput, round {turn + 1} of {rounds}")
        for name, target in targets.items():
            samples, use = await sequential_latency(target, per_round)
            latency[name] += samples
            cpu[name] += use
        for callers in CONCURRENCY:
            for name, target in targets.items():
                machine, server = CpuMeter(), ServerCpu(target.pid)
                done, elapsed_s = await calls_made(target, callers, seconds / rounds)
                rates[name][callers].append(done / elapsed_s)
                if callers == 32:
                    cpu_32[name].add(done, machine.read(), server.read())
    return {
        name: {
            "latency": summary(latency[name]),
            "echo_cpu": cpu_summary(cpu[name], len(latency[name])),
            "throughput": {n: statistics.median(rates[name][n]) for n in CONCURRENCY},
            "cpu_32_ms": cpu_32[name].per_call_ms(),
        }
        for name in targets
    }


async def wake_ups_in_turns(
    fork: Target, floor: Target, samples: int, rounds: int
) -> dict[str, Any]:
    lags: dict[str, list[float]] = {"noded": [], "floor": []}
    per_round = -(-samples // rounds)
    for turn in range(rounds):
        step(f"wake-up latency, round {turn + 1} of {rounds}")
        lags["noded"] += await wake_up_latency(fork, per_round)
        lags["floor"] += await wake_up_floor(floor, per_round)
    return {name: summary(values) for name, values in lags.items()}


async def run(calls: int, seconds: float, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="noded-bench-") as tmp:
        workdir = Path(tmp)
        async with (
            noded("fork", workdir) as fork,
            noded("exec", workdir) as exec_,
            http_floor() as floor,
            http_floor("tests.bench.process_floor") as process_floor,
        ):
            targets = {"noded": fork, "exec": exec_, "floor": floor, "process": process_floor}
            report.update(await measure_in_turns(targets, calls, seconds, rounds))
            report["wake_up"] = await wake_ups_in_turns(fork, floor, 300, rounds)
            step("output: latency of a line printed every 10 ms, and a 100 MiB print flood")
            report["output"] = {
                "latency": summary(await output.output_latency(fork.url)),
                "flood": await output.flood(fork.url, fork.pid),
            }
        report["audit"] = await audit_cost(workdir, calls, seconds, rounds)
        report["fleet"] = [await fleet_run(*extra) for extra in ((), ("--busy", "2"), ("--tls",))]
        async with noded("fork", workdir / "memory") as fork:  # fresh: idle means idle
            step("memory")
            report["memory"] = await memory(fork, 500)
        async with noded("fork", workdir / "scale") as fork:
            report["scale"] = []
            for turn in ("first", "second"):  # the first may touch guest memory never used
                step(f"scale: 1,000 sleep(5), {turn} run")
                report["scale"].append(await scale(fork, 1000, 5.0))
    report["masterd"] = await master_daemon.run()
    report["emit"] = await emit_latency.run()
    report["masterd_job"] = await master_job.run()
    report["stores"] = await master_scale.run()
    return report


async def audit_cost(workdir: Path, calls: int, seconds: float, rounds: int) -> dict[str, Any]:
    """Echo with and without the audit log, in turns; the log on a real disk."""
    disk = Path(tempfile.mkdtemp(prefix="noded-bench-audit-", dir="/var/tmp"))
    try:
        async with (
            noded("fork", workdir / "plain") as plain,
            noded("fork", workdir / "audited", "--audit-log", str(disk / "audit.log")) as audited,
        ):
            targets = {"without": plain, "with": audited}
            latency: dict[str, list[float]] = {name: [] for name in targets}
            rates: dict[str, list[float]] = {name: [] for name in targets}
            for turn in range(rounds):
                step(f"audit log cost, round {turn + 1} of {rounds}")
                for name, target in targets.items():
                    latency[name] += (await sequential_latency(target, calls // rounds))[0]
                    rates[name].append(await throughput(target, 32, seconds / rounds))
            fsyncs_per_start = await _fsyncs_per_start(audited)
    finally:
        shutil.rmtree(disk, ignore_errors=True)
    return {
        **{f"{name}_p50_ms": summary(latency[name])["p50_ms"] for name in targets},
        **{f"{name}_32_callers": statistics.median(rates[name]) for name in targets},
        "fsyncs_per_start": fsyncs_per_start,
    }


async def fleet_run(*extra: str) -> dict[str, Any]:
    """The fan-out measurement, in a process of its own (its CPU is the master's)."""
    step(f"fleet: one gather to about a thousand nodes {' '.join(extra)}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.fleet", *extra, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, **node_env()},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    return {"tls": "--tls" in extra, **json.loads(out.decode().strip().splitlines()[-1])}


async def _fsyncs_per_start(target: Target) -> float:
    async with aiohttp.ClientSession() as session, session.get(target.url + "/metrics") as got:
        text = await got.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            name = sample.split("{")[0]
            values[name] = values.get(name, 0.0) + float(value)
    return values["noded_audit_fsyncs_total"] / max(1.0, values["noded_calls_started_total"])


def step(what: str) -> None:
    print(f"... {what}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        # how an idle CPU waits decides what a wake-up costs (a VM exit, without polling)
        "cpuidle": _read("/sys/devices/system/cpu/cpuidle/current_driver"),
        "guest_halt_poll_ns": _read("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
        # PM QoS: 0 while someone (tuned's latency-performance, say) keeps CPUs from halting
        "cpu_dma_latency_us": _read_cpu_dma_latency(),
    }


def _read_cpu_dma_latency() -> int | None:
    with contextlib.suppress(OSError), open("/dev/cpu_dma_latency", "rb") as qos:
        return int.from_bytes(qos.read(4), sys.byteorder, signed=True)
    return None


def _read(path: str) -> str | None:
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip()
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def table(report: dict[str, Any]) -> str:
    rows = [
        f"{'':24}{'noded fork':>14}{'exec (A)':>14}{'HTTP floor (B)':>16}"
        f"{'noded/A':>10}{'noded/B':>10}"
    ]
    n, a, b = report["noded"], report["exec"], report["floor"]
    for key, label in (("p50_ms", "echo p50 (ms)"), ("p99_ms", "echo p99 (ms)")):
        x, y, z = n["latency"][key], a["latency"][key], b["latency"][key]
        rows.append(_ratio_row(label, x, y, z))
    rows += _cpu_rows(n["echo_cpu"], a["echo_cpu"], b["echo_cpu"])
    for callers in CONCURRENCY:
        x, y, z = (t["throughput"][callers] for t in (n, a, b))
        rows.append(
            f"{f'calls/s, {callers} callers':24}{x:14.0f}{y:14.0f}{z:16.0f}"
            f"{x / y:10.1f}{x / z:10.2f}"
        )
    rows += _process_floor_rows(n, report["process"])
    w, m = report["wake_up"], report["memory"]
    rows += [
        f"wake-up p50 / p99: {w['noded']['p50_ms']:.3f} / {w['noded']['p99_ms']:.3f} ms; "
        f"its floor (aiohttp, a helper process, a pipe): {w['floor']['p50_ms']:.3f} / "
        f"{w['floor']['p99_ms']:.3f} ms",
        *_output_rows(report["output"], w["floor"]),
        _audit_row(report["audit"]),
        *(_fleet_row(run) for run in report["fleet"]),
        f"daemon RSS idle {m['idle_rss_mib']:.1f} MiB, with 500 running "
        f"{m['rss_500_running_mib']:.1f} MiB; one function process USS "
        f"{m['function_uss_mib']:.2f} MiB",
        *(
            f"scale, run {i}: {s['finished']}/{s['started']} sleep(5) finished in "
            f"{s['wall_s']:.2f} s (all started in {s['start_s']:.2f} s), "
            f"{s['zombies']} zombies left"
            for i, s in enumerate(report["scale"], 1)
        ),
        *master_daemon.rows(report["masterd"]),
        *emit_latency.rows(report["emit"]),
        *master_job.rows(report["masterd_job"]),
        *master_scale.rows(report["stores"]),
        f"machine: {report['machine']}",
    ]
    return "\n".join(rows)


def _output_rows(out: dict[str, Any], floor: dict[str, float]) -> list[str]:
    lag, flood = out["latency"], out["flood"]
    return [
        f"output latency (a line every 10 ms) p50 / p99: {lag['p50_ms']:.3f} / "
        f"{lag['p99_ms']:.3f} ms; the wake-up floor: {floor['p50_ms']:.3f} / "
        f"{floor['p99_ms']:.3f} ms",
        f"print flood: {flood['mib']} MiB in {flood['wall_s']:.2f} s, "
        f"{flood['mib_per_s']:.0f} MiB/s through the daemon, daemon CPU "
        f"{flood['daemon_cpu_ms_per_mib']:.2f} ms per MiB, RSS after {flood['rss_mib']:.1f} MiB",
    ]


def _process_floor_rows(noded: dict[str, Any], floor: dict[str, Any]) -> list[str]:
    p50, floor_p50 = noded["latency"]["p50_ms"], floor["latency"]["p50_ms"]
    rate, floor_rate = noded["throughput"][32], floor["throughput"][32]
    return [
        f"process floor (C): echo p50 {floor_p50:.3f} ms, {floor_rate:.0f} calls/s at 32 "
        f"callers; noded/C: p50 {p50 / floor_p50:.2f}x (goal <= 1.25), calls/s at 32 "
        f"{rate / floor_rate:.2f}x (goal >= 0.8)",
        _cpu_32_row(noded["cpu_32_ms"], floor["cpu_32_ms"]),
    ]


def _cpu_32_row(noded: dict[str, float | None], floor: dict[str, float | None]) -> str:
    """Where calls/s at 32 callers goes: CPU a call, noded against the process floor."""
    parts = []
    for key, label in (
        ("machine", "machine"),
        ("server", "server"),
        ("fork_server", "fork server"),
        ("rest", "the rest (function processes, client, kernel)"),
    ):
        x, y = noded[key], floor[key]
        shown = "n/a" if x is None or y is None else f"{x:.3f} / {y:.3f}"
        parts.append(f"{label} {shown}")
    return "CPU ms a call at 32 callers, noded / C: " + ", ".join(parts)


def _fleet_row(run: dict[str, Any]) -> str:
    busy = f" ({run['busy_cpus']} CPUs busy)" if run.get("busy_cpus") else ""
    return (
        f"fleet{' (mTLS)' if run['tls'] else ''}{busy}: {run['named']}/{run['nodes']} nodes "
        f"named ({run['outcomes']}), master CPU {run['cpu_ms_per_node']:.3f} ms and "
        f"{run['rss_kib_per_node']:.0f} KiB a node, last good result {run['last_ok_s']:.2f} s, "
        f"last node named {run['last_named_s']:.2f} s (bound {run['bound_s']:.1f} s)"
    )


def _audit_row(audit: dict[str, Any]) -> str:
    with_, without = audit["with_p50_ms"], audit["without_p50_ms"]
    return (
        f"audit log: echo p50 {with_:.3f} ms with, {without:.3f} ms without "
        f"(+{with_ - without:.3f} ms a start); calls/s at 32 callers "
        f"{audit['with_32_callers']:.0f} with, {audit['without_32_callers']:.0f} without "
        f"({audit['with_32_callers'] / audit['without_32_callers']:.2f}x); "
        f"{audit['fsyncs_per_start']:.2f} fsyncs a start"
    )


def _cpu_rows(*uses: dict[str, float | None]) -> list[str]:
    """The whole machine's CPU per sequential echo call, and how busy its CPUs were."""
    per_call = [ms for use in uses if (ms := use["ms_per_call"]) is not None]
    busy = [pc for use in uses if (pc := use["busy_percent"]) is not None]
    if len(per_call) < len(uses) or len(busy) < len(uses):
        return ["echo, machine CPU: not measured"]
    x, y, z = per_call
    bx, by, bz = busy
    return [
        _ratio_row("echo CPU ms/call", x, y, z),
        f"{'echo CPUs busy (%)':24}{bx:14.0f}{by:14.0f}{bz:16.0f}",
    ]


def _ratio_row(label: str, noded: float, exec_: float, floor: float) -> str:
    """A row of milliseconds, with noded's ratio to each reference (lower is better)."""
    return (
        f"{label:24}{noded:14.3f}{exec_:14.3f}{floor:16.3f}"
        f"{noded / exec_:10.3f}{noded / floor:10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per target")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput point")
    parser.add_argument("--rounds", type=int, default=5, help="turns the targets take")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--only", choices=["masterd"], help="only this section")
    args = parser.parse_args()
    if args.only == "masterd":
        report = {"machine": machine(), "masterd": asyncio.run(master_daemon.run()),
                  "emit": asyncio.run(emit_latency.run())}  # fmt: skip
        report["masterd_job"] = asyncio.run(master_job.run())
        report["stores"] = asyncio.run(master_scale.run())
        args.out.write_text(json.dumps(report, indent=2))
        print("\n".join([*master_daemon.rows(report["masterd"]),
                         *emit_latency.rows(report["emit"]),
                         *master_job.rows(report["masterd_job"]),
                         *master_scale.rows(report["stores"]),
                         f"machine: {machine()}"]))  # fmt: skip
        print(f"(numbers in {args.out})")
        return
    report = asyncio.run(run(args.calls, args.seconds, args.rounds))
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"(numbers in {args.out})")


if __name__ == "__main__":
    main()
