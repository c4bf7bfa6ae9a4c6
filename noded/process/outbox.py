"""Messages from the daemon to the fork server, sent as few datagrams as they fit in.

A send that finds the fork server asleep must wake it, which costs the sender about 0.1 ms on
a VM: what is asked within a few ms goes together, one wake-up for many.  What a call
waits for goes once the loop's turn is done, with whatever else that turn asked (a burst
of calls is one datagram).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket

from noded.process.child import fork_server
from rpc_client.logs import event

log = logging.getLogger("noded.forkserver")

_COALESCE_S = 0.002


class Outbox:
    """What waits to be sent to the fork server over its control socket."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._messages: collections.deque[bytes] = collections.deque()
        self._socket: socket.socket | None = None
        self._blocked = False  # the socket is full: the rest goes when it drains
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_soon: asyncio.Handle | None = None

    def attach(self, control: socket.socket) -> None:
        """Send to a new fork server from now on (what waited was meant for one that is gone)."""
        self.detach()
        self._socket = control

    def detach(self) -> None:
        """Stop sending: the fork server is gone, or going."""
        if self._socket is not None and self._blocked:
            self._loop.remove_writer(self._socket.fileno())
        self._blocked = False
        self._cancel_flush()
        self._messages.clear()
        self._socket = None

    def put(self, message: bytes, *, now: bool = False) -> None:
        """Send ``message``: this turn of the loop if ``now`` (a call waits for it), else
        within a few ms."""
        self._messages.append(message)
        if now:
            if self._flush_soon is None:
                self._flush_soon = self._loop.call_soon(self.flush)
        elif self._flush_timer is None and self._flush_soon is None:
            self._flush_timer = self._loop.call_later(_COALESCE_S, self.flush)

    def flush(self) -> None:
        """Send what waits, now."""
        self._cancel_flush()
        if self._socket is None or self._blocked:
            return
        while self._messages:
            datagram = self._next_datagram()
            try:
                self._socket.send(datagram)
            except BlockingIOError:  # hundreds of forks asked at once: wait for room
                self._messages.appendleft(datagram)
                self._blocked = True
                self._loop.add_writer(self._socket.fileno(), self._on_writable)
                return
            except OSError as exc:  # the fork server is gone: its exit is handled on its own
                self._messages.appendleft(datagram)
                event(log, "forkserver.send_failed", logging.WARNING, error=str(exc))
                return

    def _next_datagram(self) -> bytes:
        parts = [self._messages.popleft()]
        size = len(parts[0])
        while self._messages and size + len(self._messages[0]) <= fork_server.MAX_DATAGRAM:
            size += len(self._messages[0])
            parts.append(self._messages.popleft())
        return b"".join(parts)

    def _on_writable(self) -> None:
        if self._socket is not None:
            self._loop.remove_writer(self._socket.fileno())
        self._blocked = False
        self.flush()

    def _cancel_flush(self) -> None:
        for handle in (self._flush_timer, self._flush_soon):
            if handle is not None:
                handle.cancel()
        self._flush_timer = self._flush_soon = None
