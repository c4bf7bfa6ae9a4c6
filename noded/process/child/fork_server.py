"""The fork server ("zygote"): imports the function modules once, forks a child per call.

Started by the daemon as ``python -m noded.process.child.fork_server CONTROL_FD MODULE...``;
it imports nothing of aiohttp.  It speaks over a SOCK_SEQPACKET socket; a datagram
holds one message or, where marked, several in a row (one wake-up for many):

====================  =========================================================
daemon -> zygote      ``F``: fork a child (several)
                      ``R`` pid: reap that child (the daemon saw it exit), report
                      (several)
zygote -> daemon      ``Y``: ready, the modules are imported
                      ``C`` pid, with SCM_RIGHTS: the child's stdin, stdout, stderr
                                      and frame channel
                      ``S`` pid status: the child's wait status (several: those
                      of one datagram's reaps)
                      ``X`` errno: a fork failed (no descriptors, no processes)
====================  =========================================================

A child is reaped only when the daemon asks, so until then its pid, which is also its
process group id, cannot be given to another process: the daemon may signal the group
without ever hitting a recycled pid.  The zygote leaves when the daemon's end closes,
once it has reaped the children that leave with the daemon.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import struct
import sys
import time

from noded.process.child import runner
from noded.registry import Registry, load_modules

READY = b"Y"
FORK = b"F"
REAP = b"R"
CHILD = b"C"
STATUS = b"S"
FAILED = b"X"
PID = struct.Struct("<cI")
PID_STATUS = struct.Struct("<cIi")
#: the largest datagram the daemon sends (its answers to one are up to twice as long)
MAX_DATAGRAM = 4096
#: set by the daemon beside the LD_BIND_NOW it added for the zygote's own loading
BIND_NOW_ADDED = "NODED_ZYGOTE_BIND_NOW"
_LEAVE_GRACE_S = 1.0
_WARM_UP_CALLS = 32  # 3.11 quickens code on its 8th call, specialises it about 16 runs on


def main(argv: list[str]) -> None:
    if os.environ.pop(BIND_NOW_ADDED, None):  # the loader has read it: keep it from children
        os.environ.pop("LD_BIND_NOW", None)
    control = socket.socket(fileno=int(argv[0]))
    modules = argv[1:]
    registry = load_modules(modules)  # a module that does not import stops the zygote here
    runner.prepare()
    runner.warm_up(registry, _WARM_UP_CALLS)
    # Everything imported so far lives as long as the zygote: keep it out of the
    # collector's reach, so that a collection in a child does not touch (and so copy)
    # every page of it.  A child allocating 30,000 objects faulted 370 pages fewer.
    gc.freeze()
    # Set here once what every child would otherwise set again: each Python-level call a
    # child makes copies the pages it touches (a child's setup took 140 page faults).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)  # a function process starts with the defaults
    max_fd = _max_fd()
    sys.stdout.flush()
    control.send(READY)
    with contextlib.suppress(ConnectionError):  # the daemon closed its end while we spoke
        _serve(control, registry, max_fd)
    _reap_leavers()
    os._exit(0)


def _serve(control: socket.socket, registry: Registry, max_fd: int) -> None:
    """Answer the daemon until it closes its end: a datagram's reaps first (one answer
    for all of them), then its forks."""
    while message := _receive(control):
        forks, reaps = _commands(message)
        if reaps:
            statuses = bytearray()
            for pid in reaps:
                statuses += PID_STATUS.pack(STATUS, pid, _reap(pid))
            control.send(statuses)
        for _ in range(forks):
            _fork_child(control, registry, max_fd)


def _commands(message: bytes) -> tuple[int, list[int]]:
    """How many forks a datagram asks for, and the pids it asks to reap."""
    forks, reaps, at = 0, [], 0
    while at < len(message):
        kind = message[at : at + 1]
        if kind == FORK:
            forks += 1
            at += 1
        elif kind == REAP and at + PID.size <= len(message):
            reaps.append(PID.unpack_from(message, at)[1])
            at += PID.size
        else:  # not a message of ours: the rest of the datagram is ignored
            break
    return forks, reaps


def _reap_leavers() -> None:
    """Reap the children that leave with the daemon (spares, whose stdin has closed) for
    up to a second, so that none is left to init as an orphan zombie, which a container's
    init may reap late or never.  A call still running (the daemon died) goes on."""
    deadline = time.monotonic() + _LEAVE_GRACE_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no child left
            return
        if not pid:
            time.sleep(0.01)


def _receive(control: socket.socket) -> bytes:
    try:
        return control.recv(MAX_DATAGRAM)
    except (ConnectionError, InterruptedError):
        return b""


def _reap(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return -1


def _fork_child(control: socket.socket, registry: Registry, max_fd: int) -> None:
    made: list[int] = []
    try:
        for _ in range(4):
            made.extend(os.pipe())
    except OSError as exc:  # out of descriptors: say so, and stay up
        _fork_failed(control, made, exc)
        return
    # stdin, stdout, stderr, the frame channel, each a (read end, write end) in ``made``:
    # picked before the fork, so that the child runs as little code of ours as it can
    child_ends = [made[0], made[3], made[5], made[7]]
    parent_ends = [made[1], made[2], made[4], made[6]]
    try:
        pid = os.fork()
    except OSError as exc:  # out of processes
        _fork_failed(control, made, exc)
        return
    if pid == 0:
        _become_function_process(control, child_ends, registry, max_fd)
    for fd in child_ends:
        os.close(fd)
    try:
        socket.send_fds(control, [PID.pack(CHILD, pid)], parent_ends)
    finally:  # sent or not (the daemon gone), ours are closed: the child reads EOF, leaves
        for fd in parent_ends:
            os.close(fd)


def _fork_failed(control: socket.socket, made: list[int], exc: OSError) -> None:
    for fd in made:
        os.close(fd)
    control.send(PID.pack(FAILED, exc.errno or 0))


def _become_function_process(
    control: socket.socket, ends: list[int], registry: Registry, max_fd: int
) -> None:
    try:
        os.setsid()  # leader of its own session and process group
        control.detach()  # closed below; the object must never close a reused number
        # Every end is above 3: none is overwritten.  Arguments by position: dup2's
        # keyword parser is set up on its first keyword call, and it would be each
        # child's first (a page copied for it).
        os.dup2(ends[0], 0)
        os.dup2(ends[1], 1)
        os.dup2(ends[2], 2)
        os.dup2(ends[3], runner.frame_fd, False)
        os.closerange(len(ends), max_fd)  # the control socket's copies, every other end
        runner.serve(registry)  # leaves with os._exit
    finally:
        os._exit(70)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


if __name__ == "__main__":
    from noded.process.child import fork_server

    fork_server.main(sys.argv[1:])
