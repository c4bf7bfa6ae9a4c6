"""systemd's notify protocol, without libsystemd: READY, STOPPING, STATUS and WATCHDOG.

Both daemons' (ganeti-noded, ganeti-masterd) ``Type=notify`` units use it.  Messages go
as datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace).  Without that variable every call is a no-op, so the daemon runs the same
outside systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from rpc_client.logs import event

log = logging.getLogger("rpc_client.systemd")

_SEND_TIMEOUT_S = 1.0
#: environment variables meant for the daemon alone, never for function processes
SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


def notify(*lines: str) -> bool:
    """Send ``KEY=value`` lines to systemd; False if not run under a notify socket."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError as exc:
        event(log, "systemd.notify_failed", logging.WARNING, error=str(exc))
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of ``$WATCHDOG_USEC`` if the watchdog is meant for this process, else None."""
    usec, pid = os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 1e6 / 2, 0.01)
    except ValueError:
        return None


async def ping_watchdog_forever(interval_s: float) -> None:
    """WATCHDOG=1 from the event loop: a loop that stops turning stops the pings."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
