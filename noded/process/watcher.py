"""One epoll instance for the descriptors of every function process.

The event loop watches the epoll descriptor as a single reader.  Watching a pipe or a
pidfd then costs one ``epoll_ctl`` to add and one to remove, where a reader of the loop
itself (uvloop) costs four system calls to add and three to remove: about twenty system
calls a call, on the daemon's only thread.  Readiness is level-triggered, as with the
loop's readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Callable


class DescriptorWatcher:
    """Calls a callback whenever one of its descriptors is readable."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        #: descriptors removed during this dispatch: a later event for the same number
        #: belongs to what it was before, not to a descriptor given that number since
        self._removed: set[int] = set()
        self._loop.add_reader(self._epoll.fileno(), self._dispatch)

    def add(self, fd: int, callback: Callable[[], None]) -> None:
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int, *, closing: bool = False) -> None:
        """Stop watching ``fd``.  ``closing``: the caller closes it next, and it is the only
        descriptor of its file (closing it takes it out of the epoll set: no system call)."""
        if self._callbacks.pop(fd, None) is not None and not self._epoll.closed:
            self._removed.add(fd)
            if not closing:
                with contextlib.suppress(OSError):
                    self._epoll.unregister(fd)

    def close(self) -> None:
        if not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        self._callbacks.clear()

    def _dispatch(self) -> None:
        self._removed.clear()
        for fd, _ in self._epoll.poll(0):
            callback = self._callbacks.get(fd)
            if callback is not None and fd not in self._removed:
                callback()
