"""ListFunctions' entry of a call: what it is, and what its process uses now."""

from __future__ import annotations

import contextlib
from typing import Any

import psutil

from noded.calls.table import FunctionCall
from rpc_client.protocol import listed_outcome


def listing_entry(call: FunctionCall) -> dict[str, Any]:
    """One call as ListFunctions shows it, with cpu and rss while it runs, and how it
    ended (``outcome``, and ``error_type`` if it failed or was aborted)."""
    cpu_s, rss = None, None
    if not call.finished:
        cpu_s, rss = _usage(call.pid)
    return {
        "fnc_id": call.fnc_id,
        "fn_name": call.fn_name,
        "finished": call.finished,
        "outcome": listed_outcome(call.finished, call.error),
        "error_type": None if call.error is None else call.error.get("type"),
        "started": call.started,
        "elapsed_s": round(call.elapsed_s, 6),
        "pid": call.pid,
        "cpu_s": cpu_s,
        "rss_bytes": rss,
        "progress": call.progress,
    }


def _usage(pid: int) -> tuple[float | None, int | None]:
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            return round(cpu.user + cpu.system, 3), proc.memory_info().rss
    return None, None
