"""The process floor's fork server (``tests/bench/process_floor.py``): a lean process
that forks a child per byte asked, with a fresh pair of pipes whose other ends it sends
back.  It imports nothing heavy, so that a fork copies little."""

from __future__ import annotations

import os
import signal
import socket
import sys

import orjson


def fork_server(control: socket.socket) -> None:
    """In the fork server: for each byte asked, fork a child with a fresh pair of pipes
    and send their other ends back; children are reaped by the kernel."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while control.recv(1):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        if os.fork() == 0:
            control.close()
            os.close(to_child_w)
            os.close(from_child_r)
            _child(to_child_r, from_child_w)
        os.close(to_child_r)
        os.close(from_child_w)
        socket.send_fds(control, [b"c"], [to_child_w, from_child_r])
        os.close(to_child_w)
        os.close(from_child_r)
    os._exit(0)


def _child(requests: int, answers: int) -> None:
    with os.fdopen(requests, "rb") as stream:
        line = stream.readline()
    if not line:  # released unused: the server stopped
        os._exit(0)
    call = orjson.loads(line)
    result = {"ok": True, "result": call["fn_args"].get("value")}
    os.write(answers, orjson.dumps(result) + b"\n")
    os._exit(0)


if __name__ == "__main__":
    fork_server(socket.socket(fileno=int(sys.argv[1])))
