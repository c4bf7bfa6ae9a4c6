"""make bench: a call's output through the daemon (protocol 1.1's output_from).

- latency: a function prints the time every 10 ms; a follower (WaitForFunction with
  ``output_from``, each answer asking from the last ``next``) notes when each line
  arrives.  The wake-up floor (a helper process's pipe write to aiohttp's answer) is
  what any design that runs functions elsewhere pays.
- a print flood: 100 MiB written to stdout as fast as the daemon reads it; MiB/s through
  the daemon (kept on disk, the newest --max-output-bytes), and the daemon's CPU per MiB.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
import psutil

LINES, INTERVAL_S = 300, 0.01
FLOOD_MIB = 100


async def output_latency(url: str, lines: int = LINES) -> list[float]:
    """Seconds from each printed line's time to the follower having it."""
    start = orjson.dumps(
        {"fn_name": "tick", "fn_args": {"lines": lines, "interval_s": INTERVAL_S}, "timeout": 0}
    )
    lags: list[float] = []
    async with aiohttp.ClientSession() as session:
        fnc_id = (await _put(session, url + "/StartFunction", start))["fnc_id"]
        position, finished = 0, False
        while not finished:
            wait = {"fnc_id": fnc_id, "timeout": 10, "output_from": position}
            state = await _put(session, url + "/WaitForFunction", orjson.dumps(wait))
            now = time.time()
            for event in state["output"]["events"]:
                lags += [now - float(line) for line in event["text"].split()]
            position = state["output"]["next"]
            finished = state["finished"] and position == state["output_next"]
    return lags


async def flood(url: str, daemon_pid: int, mebibytes: int = FLOOD_MIB) -> dict[str, float]:
    """Throughput of a print flood through the daemon, and the daemon's CPU per MiB."""
    daemon = psutil.Process(daemon_pid)
    body = orjson.dumps({"fn_name": "flood", "fn_args": {"megabytes": mebibytes}, "timeout": 300})
    async with aiohttp.ClientSession() as session:
        cpu_before, began = _cpu(daemon), time.perf_counter()
        state = await _put(session, url + "/StartFunction", body)
        wall_s, cpu_s = time.perf_counter() - began, _cpu(daemon) - cpu_before
    assert state["result"] == mebibytes, state
    return {
        "mib": mebibytes,
        "wall_s": wall_s,
        "mib_per_s": mebibytes / wall_s,
        "daemon_cpu_ms_per_mib": cpu_s * 1000 / mebibytes,
        "rss_mib": daemon.memory_info().rss / (1 << 20),
    }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _put(session: aiohttp.ClientSession, url: str, body: bytes) -> Any:
    async with session.put(url, data=body, timeout=aiohttp.ClientTimeout(total=320)) as answer:
        return orjson.loads(await answer.read())
