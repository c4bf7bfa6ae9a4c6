"""Functions every ganeti-noded serves."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from noded.registry import function


@function
def echo(value: Any) -> Any:
    """Return value unchanged."""
    return value


@function(name="sleep")
def sleep_for(seconds: float) -> float:
    """Sleep for the given number of seconds and return it."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    time.sleep(seconds)
    return seconds


@function
def node_info() -> dict[str, Any]:
    """Hostname, CPUs, load, memory and mounted disks of this node."""
    import psutil  # imported here so that other calls do not pay for it

    memory = psutil.virtual_memory()
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "load_avg": list(os.getloadavg()),
        "boot_time": psutil.boot_time(),
        "memory": {"total_bytes": memory.total, "available_bytes": memory.available},
        "disks": [_disk(part.mountpoint, part.fstype) for part in psutil.disk_partitions()],
    }


def _disk(mountpoint: str, fstype: str) -> dict[str, Any]:
    import psutil

    try:
        usage = psutil.disk_usage(mountpoint)
    except OSError:
        return {"mountpoint": mountpoint, "fstype": fstype, "error": "unreadable"}
    return {
        "mountpoint": mountpoint,
        "fstype": fstype,
        "total_bytes": usage.total,
        "free_bytes": usage.free,
    }
