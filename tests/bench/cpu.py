"""CPU time a call costs, for ``make bench``: the whole machine's, and the server's own and
its fork server's, so that a gap in calls/s can be put where it is spent.

At 32 callers both CPUs are busy, so calls/s is set by what a call costs the whole
machine: the server, its fork server, the function processes, the client and the kernel.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import psutil


class CpuUse:
    """CPU time used by every process on the machine over some wall time."""

    def __init__(self, busy_s: float = 0.0, wall_s: float = 0.0) -> None:
        self.busy_s, self.wall_s = busy_s, wall_s

    def __add__(self, other: CpuUse) -> CpuUse:
        return CpuUse(self.busy_s + other.busy_s, self.wall_s + other.wall_s)


class CpuMeter:
    """The machine's busy CPU time from now on: wall time x CPUs, less their idle time.

    Idle time comes from cpuidle's per-state counters, kept to the microsecond, where the
    kernel has them; else from /proc/stat, in 10 ms ticks (over a second of two busy
    CPUs, within 1%).
    """

    _IDLE = "/sys/devices/system/cpu/cpu[0-9]*/cpuidle/state[0-9]*/time"

    def __init__(self) -> None:
        self._paths = glob.glob(self._IDLE)
        self._idle_s, self._began = self._idle(), time.perf_counter()

    def _idle(self) -> float:
        if not self._paths:
            times = psutil.cpu_times()
            return times.idle + getattr(times, "iowait", 0.0)
        return sum(int(Path(path).read_text()) for path in self._paths) / 1e6

    def read(self) -> CpuUse:
        wall_s = time.perf_counter() - self._began
        idle_s = self._idle() - self._idle_s
        return CpuUse(max(0.0, wall_s * (os.cpu_count() or 1) - idle_s), wall_s)


def cpu_summary(use: CpuUse, calls: int) -> dict[str, float | None]:
    if not use.wall_s:
        return {"ms_per_call": None, "busy_percent": None}
    return {
        "ms_per_call": use.busy_s / calls * 1e3,
        "busy_percent": 100 * use.busy_s / (use.wall_s * (os.cpu_count() or 1)),
    }


class ServerCpu:
    """CPU time of a server process and of its helpers (the children alive at both reads:
    its fork server) from now on.  A fork server's function processes are not in it: the
    floor's are reaped by the kernel, so their time is counted nowhere but the machine's."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._began = self._times()

    def _times(self) -> dict[int, float]:
        server = psutil.Process(self._pid)
        times = {self._pid: _busy_s(server)}
        for child in server.children():
            try:
                times[child.pid] = _busy_s(child)
            except psutil.NoSuchProcess:  # a function process of noded --spawn exec, gone
                continue
        return times

    def read(self) -> tuple[float, float]:
        """(the server's CPU seconds, its helpers')."""
        now, began = self._times(), self._began
        helpers = [pid for pid in now if pid in began and pid != self._pid]
        return now[self._pid] - began[self._pid], sum(now[pid] - began[pid] for pid in helpers)


def _busy_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class CallCpu:
    """What a number of calls cost: the machine, the server, its helpers (seconds)."""

    def __init__(self) -> None:
        self.calls, self.machine_s, self.server_s, self.helpers_s = 0, 0.0, 0.0, 0.0

    def add(self, calls: int, machine: CpuUse, server: tuple[float, float]) -> None:
        self.calls += calls
        self.machine_s += machine.busy_s
        self.server_s += server[0]
        self.helpers_s += server[1]

    def per_call_ms(self) -> dict[str, float | None]:
        """Milliseconds a call (None for each if no call was made): the machine's, the
        server's, its fork server's, and the rest (function processes, client, kernel)."""
        if not self.calls:
            return {"machine": None, "server": None, "fork_server": None, "rest": None}
        per = 1e3 / self.calls
        machine, server = self.machine_s * per, self.server_s * per
        helpers = self.helpers_s * per
        rest = machine - server - helpers
        return {"machine": machine, "server": server, "fork_server": helpers, "rest": rest}
