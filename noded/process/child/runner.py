"""The inside of a function process: read the call, run it, write one frame, leave.

Run as ``python -m noded.process.child.runner [MODULE ...]``, with the frame channel on
fd 3 (see :mod:`noded.process.child.frames`).  What the function prints, logs, or a
program it starts writes goes to stdout and stderr: the call's output, which the daemon
keeps.  stdout is line-buffered, so a line printed is a line the caller can see.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from types import TracebackType
from typing import Any

from noded.process.child import containment, frames, limits, progress
from noded.registry import Registry, load_modules

#: The descriptor that carries the result frame and progress reports.
frame_fd = frames.FRAME_FD
#: what a rehearsal runs: the built-in ``echo``, which every registry has
_REHEARSAL = b"0:0\n" + frames.encode_request("echo", {"value": [1, 2.5, "x", {"y": None}]})


def prepare() -> None:
    """Set up what every call's process needs: the fork server does it once, before it
    forks (each child would otherwise copy the pages it touches: 0.1 MiB a process)."""
    progress.channel_fd = frame_fd
    with contextlib.suppress(AttributeError, ValueError):
        # write_through: PYTHONUNBUFFERED=1 (which daemons often run with) would write a
        # print's text and its newline apart, cutting the caller's output events mid-line
        sys.stdout.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]


def main(modules: list[str]) -> None:
    """Run one call, in a process of its own (not forked by the fork server)."""
    prepare()
    os.set_inheritable(frame_fd, False)  # a program the function runs does not get it
    serve(load_modules(modules))


def serve(registry: Registry) -> None:
    """Run the call that comes on stdin, write its frame, leave.  In a child of the fork
    server, which prepared this process and made fd 3 close-on-exec already."""
    containment.hold_orphans()  # what the call starts stays in its tree (noded.process.tree)
    if not select.select([0], [], [], 0)[0]:  # a call already waiting goes first
        rehearse(registry)
    request = read_request(0)
    if not request:  # a spare process released without a call
        os._exit(0)
    frame = answer(registry, request)
    flush_output()
    try:
        progress.write_last(frame)  # under the lock of every line on fd 3
    except OSError as exc:  # the function closed or replaced fd 3: its stderr says so
        os.write(2, f"noded: the result could not be written to fd {frame_fd} (the "
                    f"function may have closed it): {exc}\n".encode())  # fmt: skip
        os._exit(70)
    # The write woke the daemon, usually onto this CPU (a pipe write is a "sync" wake-up:
    # the kernel expects the writer to sleep now).  Our exit takes longer than the
    # daemon's turn, so let the daemon go first: wake-up p50 1.6 -> 1.2 ms here.
    os.sched_yield()
    # os._exit skips interpreter teardown (about 2 ms) and any atexit hook of the function.
    os._exit(0)


def answer(registry: Registry, request: bytes) -> bytes:
    """The frame that answers ``request``: the call run under its limits, or its failure."""
    mark, _, call = request.partition(frames.FRAME_END)
    fn_name, fn_args, call_limits = frames.decode_request(call)
    if not mark:  # the daemon could not read our start time
        mark = frames.call_mark(os.getpid(), frames.start_ticks()).encode()
    # where /proc shows it, forked children too (os.environ's dict would copy pages)
    containment.publish_mark(frames.CALL_MARK, mark.decode())
    try:
        limits.apply(call_limits)
        result = _run(registry, fn_name, fn_args)
    except BaseException as exc:  # the function's failure, whatever it is, goes in the frame
        exc = exc.with_traceback(_without_runner_frames(exc))
        return frames.encode_exception(exc, limits.exceeded(exc, call_limits))
    try:
        return frames.encode_result(result)
    except TypeError as exc:  # a set, bytes, an int over 64 bits...: say whose value it is
        return frames.encode_exception(
            TypeError(f"{fn_name}() returned a value JSON cannot carry: {exc}")
        )


def _run(registry: Registry, fn_name: str, fn_args: dict[str, Any]) -> Any:
    spec = registry.get(fn_name)
    if spec is None:
        raise LookupError(f"function {fn_name!r} is not registered in this process")
    result = spec.func(**fn_args)
    if hasattr(type(result), "__await__"):  # an async function: run it to completion
        import asyncio  # only here: the fork server stays small without it

        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _without_runner_frames(exc: BaseException) -> TracebackType | None:
    # The traceback a caller sees starts in the function, not in this module.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__ and tb.tb_next:
        tb = tb.tb_next
    return tb


def rehearse(registry: Registry) -> None:
    """Walk a call's path once before the call comes, writing nothing.

    A forked child shares the fork server's memory until it writes to it, and Python
    writes to every object it touches (reference counts): the first call through the
    decoder, the registry and the encoder copies a few hundred pages.  A spare does that
    while it waits, off the request's path; a child forked for a call that is already
    waiting skips it.
    """
    answer(registry, _REHEARSAL)
    flush_output()  # nothing to flush yet; the streams' objects are written all the same


def warm_up(registry: Registry, calls: int) -> None:
    """In the fork server, before it forks: run a call's whole path ``calls`` times,
    through pipes of its own.

    Python 3.11 rewrites code in place during its first runs (counters, then specialised
    instructions) and fills a type attribute cache as it looks names up: every child
    would do both again on a path it runs for the first time, copying a page for each
    code object and cache line it writes.  Done here, the children find it done.
    """
    requests, calls_end = os.pipe()
    frames_end, answers = os.pipe()
    try:
        for _ in range(calls):
            os.write(calls_end, _REHEARSAL)
            select.select([requests], [], [], 0)
            frame = answer(registry, read_request(requests))
            flush_output()
            write_frame(answers, frame)
            os.read(frames_end, len(frame))
    finally:
        for fd in (requests, calls_end, frames_end, answers):
            os.close(fd)
    containment.publish_mark(frames.CALL_MARK, "")  # not a call's; each child sets its own


def read_request(fd: int) -> bytes:
    """The call's mark and request, read up to the request's newline (or EOF: b"" for a
    released spare).  JSON text holds no raw newline: the second one ends it."""
    chunks, lines = [], 0
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
        lines += chunk.count(frames.FRAME_END)
        if lines >= 2:
            break
    return b"".join(chunks)


def flush_output() -> None:
    """Output before the result: the daemon reads it all before it answers."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    progress.flush()


def write_frame(fd: int, frame: bytes) -> None:
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    # Run main() of the module as imported by name, so that functions which import
    # noded.runner see the same frame_fd.
    from noded.process.child import runner

    runner.main(sys.argv[1:])
