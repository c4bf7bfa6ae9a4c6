"""``make profile``: where the daemon's time goes while it serves ``echo`` calls.

Starts a noded (``--spawn fork``), drives it from a client process of its own, sequentially
or with ``--callers`` at once, and reports for that window:

- per call, from ``/proc/PID/schedstat``: the time the daemon and the fork server spent
  on a CPU, and the time they spent runnable but waiting for one; and the CPU time of the
  function processes (the fork server's reaped children, from ``/proc/PID/stat``);
- a py-spy profile of the daemon (samples of it running or runnable), by package and by
  innermost frame, and the collapsed stacks (``--out``) for a flame graph.

A line that makes a system call is charged with the whole call, including the time the
daemon waits for a CPU after the process it woke took its place.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

from tests.bench.bench import ECHO, Target, noded, put, throughput
from tests.helpers import zygote_of

#: a frame of py-spy's collapsed stacks: "function (path:line)"
FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*):(?P<line>\d+)\)$")
PACKAGES = (
    ("asyncio/runners.py", "event loop (uvloop's C code: epoll, socket reads, callbacks)"),
    ("noded/", "noded"),
    ("rpc_client/", "noded"),
    ("aiohttp/", "aiohttp"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=32, help="0: one call after another")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--python-only", action="store_true", help="no native frames (py-spy then need not pause)"
    )
    parser.add_argument("--out", type=Path, default=Path("profile.txt"))
    parser.add_argument("--drive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        print(asyncio.run(drive(args.drive, args.callers, args.seconds)))
        return
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        sys.exit("py-spy is not installed in this virtualenv: run `make profile`")
    spy_args = ["--nonblocking"] if args.python_only else ["--native"]
    spy_args += ["--rate", str(args.rate), "--format", "raw"]
    py_spy_record = [py_spy, "record", *spy_args]
    print(asyncio.run(profile(py_spy_record, args.out, args.callers, args.seconds)))
    print(f"(collapsed stacks in {args.out})")


async def drive(port: int, callers: int, seconds: float) -> int:
    """The client: echo calls for ``seconds``; the number of calls made."""
    target = Target("noded", port, 0)
    if callers > 0:
        return round(await throughput(target, callers, seconds) * seconds)
    calls, url = 0, target.url + "/StartFunction"
    async with aiohttp.ClientSession() as session:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await put(session, url, ECHO)
            calls += 1
    return calls


async def profile(py_spy_record: list[str], out: Path, callers: int, seconds: float) -> str:
    with tempfile.TemporaryDirectory(prefix="noded-profile-") as tmp:
        async with noded("fork", Path(tmp)) as target:
            zygote = zygote_of(target.pid).pid
            before = {pid: schedstat(pid) for pid in (target.pid, zygote)}
            children_before = reaped_children_cpu_s(zygote)
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.bench.profile", "--drive", str(target.port),
                "--callers", str(callers), "--seconds", str(seconds),
                stdout=subprocess.PIPE,
            )  # fmt: skip
            spy = await asyncio.create_subprocess_exec(
                *py_spy_record, "--output", str(out),
                "--pid", str(target.pid), "--duration", str(int(seconds)),
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(client.communicate(), seconds + 60)
            _, spy_errors = await asyncio.wait_for(spy.communicate(), seconds + 60)
            if spy.returncode != 0:
                sys.exit(f"py-spy failed: {spy_errors.decode(errors='replace').strip()}")
            calls = int(output.split()[-1])
            usage = {pid: per_call(before[pid], schedstat(pid), calls) for pid in before}
            children_us = (reaped_children_cpu_s(zygote) - children_before) / calls * 1e6
    mode = "one call after another" if callers == 0 else f"{callers} callers"
    return report(mode, calls, usage[target.pid], usage[zygote], children_us, out.read_text())


def schedstat(pid: int) -> tuple[int, int]:
    """Nanoseconds on a CPU and waiting on a run queue, of a process's main thread."""
    on_cpu, waiting, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu), int(waiting)


def reaped_children_cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process's reaped children."""
    times = psutil.Process(pid).cpu_times()
    return times.children_user + times.children_system


def per_call(before: tuple[int, int], after: tuple[int, int], calls: int) -> tuple[float, float]:
    """Microseconds per call on a CPU and waiting for one."""
    return (after[0] - before[0]) / calls / 1e3, (after[1] - before[1]) / calls / 1e3


def report(
    mode: str,
    calls: int,
    daemon: tuple[float, float],
    zygote: tuple[float, float],
    children_us: float,
    stacks: str,
) -> str:
    by_package, by_leaf, total = self_samples(stacks)
    rows = [
        f"{calls} echo calls, {mode}",
        f"daemon:      {daemon[0]:5.0f} us/call on a CPU, {daemon[1]:5.0f} us/call waiting for one",
        f"fork server: {zygote[0]:5.0f} us/call on a CPU, {zygote[1]:5.0f} us/call waiting for one",
        f"function processes: {children_us:5.0f} us/call on a CPU (page faults, the call, exit)",
        f"py-spy, {total} samples of the daemon running or runnable; by package:",
        *(f"  {100 * n / total:5.1f}%  {name}" for name, n in by_package.most_common()),
        "by innermost frame:",
        *(f"  {100 * n / total:5.1f}%  {name}" for name, n in by_leaf.most_common(15)),
    ]
    return "\n".join(rows)


def self_samples(stacks: str) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Samples by the package of the innermost Python frame, and by the innermost frame
    (with native frames, the C function: a system call's libc wrapper, say)."""
    by_package: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    for row in stacks.splitlines():
        stack, _, count = row.rpartition(" ")
        frames = stack.split(";")
        by_leaf[frames[-1]] += int(count)
        by_package[package(frames)] += int(count)
    return by_package, by_leaf, sum(by_leaf.values())


def package(frames: list[str]) -> str:
    """Whose Python code the sample is in: that of its innermost Python frame."""
    for frame in reversed(frames):
        match = FRAME.match(frame)
        if match and match["path"].endswith(".py"):
            return next((name for part, name in PACKAGES if part in match["path"]), "other")
    return "other"


if __name__ == "__main__":
    main()
