"""One function process: its pipes, its exit, its process group.

The daemon learns of a process's events without polling: the frame channel, stdout,
stderr and pidfd descriptors are watched by the event loop.

* A process is made waiting for its call; :meth:`FunctionProcess.start` gives it the
  call and its one :class:`CallListener`, which from then on is told of its progress,
  output, events and outcome as they arrive; the output already written when the result
  frame comes is read first, so a call's output is complete when it is seen to finish.
* The result frame is taken as soon as its newline arrives (not at EOF).
* The exit is seen through a pidfd, then reaped: with ``waitpid`` on that one pid when the
  process is the daemon's child, or by asking its parent (the fork server).  No other
  code's reaping can race ours, and a recycled pid is never signalled: the group is only
  signalled while its leader is alive or an unreaped zombie.
* Every descriptor is closed once the process has been reaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from noded.process.child.frames import mark_line
from noded.process.leftovers import process_birth
from noded.process.outcome import CallListener, Outcome, ProcessLimits
from noded.process.pipe_readers import (
    FRAME_CHUNKS_PER_TURN,
    OUTPUT_CHUNKS_PER_TURN,
    FrameReader,
    StderrTail,
    read_output,
)
from noded.process.tree import Tree
from noded.process.watcher import DescriptorWatcher

log = logging.getLogger("noded.process")

#: output chunks read from each pipe when the result is in or the process has exited
_DRAIN_CHUNKS = 16
#: frame channel chunks read once the process has exited: a pipe's largest capacity
_DRAIN_FRAME_CHUNKS = 17


#: asks a process's parent (the fork server) to reap ``pid``; it calls back with the wait
#: status, or None if lost (a callback rather than a coroutine: no task per call)
Reaper = Callable[[int, Callable[[int | None], None]], None]


class FunctionProcess:
    """One running function process and the descriptors the daemon holds for it."""

    def __init__(
        self,
        pid: int,
        fds: tuple[int, int, int, int],
        limits: ProcessLimits,
        watcher: DescriptorWatcher,
        reaper: Reaper | None = None,
    ):
        """Watch process ``pid`` through the parent's ends of its pipes: its stdin,
        stdout, stderr and frame channel (``fds``).

        Without ``reaper`` the process is this daemon's child and is reaped here; with
        one, its parent (the fork server) reaps it when asked.
        """
        self.pid = pid
        self._reaper = reaper
        self.started = time.time()
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._pidfd: int | None = os.pidfd_open(pid)
        #: which incarnation of ``pid`` this is, to recognise it after a daemon crash
        self.birth = process_birth(pid)
        self._sent = False
        self._exited = False
        self._watcher = watcher
        self._writer_added = False
        self._stdin: int | None = fds[0]
        self._stdout: int | None = fds[1]
        self._stderr: int | None = fds[2]
        self._frames: int | None = fds[3]
        self._frame_reader = FrameReader(limits.max_frame_bytes, self._progress)
        self._stderr_tail = StderrTail(limits.stderr_tail_bytes)
        self._pending_input = memoryview(b"")
        self.outcome = Outcome()
        self.decided: asyncio.Future[Outcome] = self._loop.create_future()
        self.reaped: asyncio.Future[None] = self._loop.create_future()
        self._kill_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._killing_group = False
        #: True once the group needed SIGKILL
        self.sigkilled = False
        #: its call's, from :meth:`start` until it is reaped
        self._listener: CallListener | None = None
        self._frame_reader.on_event = self._event
        #: every process of its call, escaped grandchildren included (set before its call)
        self.tree: Tree | None = None

    # --- its call ---------------------------------------------------------------

    def watch(self) -> None:
        """Watch its stdout, stderr and exit from now on (a spare is watched before its call)."""
        for fd in (self._stdin, self._stdout, self._stderr, self._frames):
            os.set_blocking(fd, False)  # type: ignore[arg-type]
        for fd, callback in (
            (self._frames, self._on_frames),
            (self._stdout, self._on_stdout),
            (self._stderr, self._on_stderr),
            (self._pidfd, self._on_exit),
        ):
            assert fd is not None
            self._watcher.add(fd, callback)

    @property
    def exited(self) -> bool:
        """True once its exit has been seen (it may still await reaping)."""
        return self._exited

    @property
    def waiting_for_call(self) -> bool:
        """True while it has been sent no call and has not exited (its exit event may
        still be on its way: the pidfd is asked too)."""
        if self._sent or self._exited:
            return False
        return self._pidfd is None or not _readable(self._pidfd)

    def start(self, request: bytes, listener: CallListener) -> None:
        """Give the process its call, and ``listener`` all it tells of it from now on;
        once.  A process that left before (while its call was being recorded) is not
        sent it: ``listener`` hears its outcome now, decided by its exit."""
        assert self._listener is None and not self._sent, "a process runs one call"
        self._listener = listener
        if self.decided.done():
            self._sent = True
            listener.decided(self.outcome)
            if self.reaped.done():
                self._let_go()
            return
        with contextlib.suppress(BrokenPipeError):  # its exit decides the call
            self._send(request)

    def _send(self, request: bytes) -> None:
        """Write the call on stdin, which is then closed; its mark comes first (the
        process would otherwise read /proc for it: copied pages, system calls).

        Raises :class:`BrokenPipeError` if the process is already gone: it never saw the
        call.
        """
        assert self._stdin is not None and self._pidfd is not None and not self._sent
        self._sent = True
        if _readable(self._pidfd):  # exited; its event is on its way
            raise BrokenPipeError(errno.EPIPE, f"process {self.pid} has already exited")
        request = mark_line(self.pid, self.birth) + request
        try:
            written = os.write(self._stdin, request)
        except BlockingIOError:
            written = 0
        self._pending_input = memoryview(request)[written:]
        self._on_stdin_writable()

    def discard(self) -> None:
        """Stop watching a process that never had a call and close our ends: it reads
        EOF on stdin and leaves (its parent reaps it)."""
        self._exited = True
        self._close_all_fds()
        self._let_go()

    def _let_go(self) -> None:
        """It is reaped or discarded: nothing will call back any more.  Drop every
        reference that ties it into a cycle (its frame reader's and its timers' bound
        methods, the callbacks that close over its call) and the raw frame, now decoded,
        so that reference counting frees it, its call and its result as soon as nothing
        else holds them: the daemon's cyclic collector runs rarely (noded.server)."""
        self._listener = None
        self._frame_reader.on_progress = self._frame_reader.on_event = None
        self._kill_timer = self._linger_timer = None
        self.outcome.frame = self._frame_reader.frame = None

    # --- signals ------------------------------------------------------------

    def terminate_group(self, kill_after_s: float | None = None) -> None:
        """SIGTERM to the whole process group; SIGKILL ``kill_after_s`` later if still alive.

        ``kill_after_s`` defaults to the kill grace period of the limits.
        """
        self._killing_group = True
        self._signal_group(signal.SIGTERM)
        delay = self._limits.kill_grace_s if kill_after_s is None else kill_after_s
        if self._kill_timer is None and not self.reaped.done():
            self._kill_timer = self._loop.call_later(delay, self.kill_group)

    def exceed(self, limit: str, what: str) -> None:
        """The call went past ``limit`` (said by ``what``): SIGKILL it, and say so in its
        outcome."""
        if self.outcome.limit_exceeded is None and not self.decided.done():
            self.outcome.limit_exceeded = (limit, what)
        self.kill_group()

    def kill_group(self) -> None:
        """SIGKILL to the whole process group, now, and to the leader by its pidfd: a
        child just forked by the fork server may not lead its group yet (its ``setsid``
        comes after the fork server names it), and ``killpg`` would then find no group."""
        self._killing_group = True
        if not self.reaped.done():
            self.sigkilled = True
        self._signal_group(signal.SIGKILL)
        if self._pidfd is not None and not self.reaped.done():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    def _signal_group(self, sig: int) -> None:
        # Safe only while the leader is unreaped: until then its pid (= the group id, and
        # the mark its descendants carry) cannot be given to another process.
        if self.reaped.done():
            return
        if self.tree is not None:  # first: once the leader dies, its orphans leave its tree
            self.tree.signal(sig)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    async def wait_reaped(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the process to have exited and been reaped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.reaped), timeout_s)
        return self.reaped.done()

    # --- event-loop callbacks -------------------------------------------------

    def _on_stdin_writable(self) -> None:
        assert self._stdin is not None
        try:
            while self._pending_input:
                self._pending_input = self._pending_input[
                    os.write(self._stdin, self._pending_input) :
                ]
        except BlockingIOError:
            self._loop.add_writer(self._stdin, self._on_stdin_writable)
            self._writer_added = True
            return
        except OSError as exc:  # EPIPE: the process does not read its input; its exit says why
            log.debug("stdin of pid %d closed early: %s", self.pid, exc)
        self._close_stdin()

    def _on_frames(self) -> None:
        # EOF without a frame decides nothing yet: the process may still run; its exit decides.
        self._read_frames()
        has_answer = self.outcome.frame is not None or self.outcome.frame_too_large
        if has_answer and not self.decided.done():
            self._drain_output()  # written before the frame: part of the answer
            self._decide()

    def _read_frames(self, chunks: int = FRAME_CHUNKS_PER_TURN) -> None:
        assert self._frames is not None
        if not self._frame_reader.read(self._frames, chunks):
            return
        self._close_fd("_frames")
        self.outcome.frame = self._frame_reader.frame
        if self._frame_reader.too_large:
            self.outcome.frame_too_large = True
            self.kill_group()  # a runaway writer: stop it rather than read more

    def _progress(self, report: dict[str, Any]) -> None:
        if self._listener is not None:
            self._listener.progress(report)

    def _event(self, report: dict[str, Any]) -> None:
        if self._listener is not None:
            self._listener.event(report)

    def _on_stdout(self, turns: int = OUTPUT_CHUNKS_PER_TURN) -> None:
        assert self._stdout is not None
        if read_output(self._stdout, self._stdout_chunk, turns):
            self._close_fd("_stdout")

    def _on_stderr(self, turns: int = OUTPUT_CHUNKS_PER_TURN) -> None:
        assert self._stderr is not None
        if read_output(self._stderr, self._stderr_chunk, turns):
            self._close_fd("_stderr")

    def _stdout_chunk(self, chunk: bytes) -> None:
        if self._listener is not None:
            self._listener.output("stdout", chunk)

    def _stderr_chunk(self, chunk: bytes) -> None:
        self._stderr_tail.keep(chunk)
        if self._listener is not None:
            self._listener.output("stderr", chunk)

    def _drain_output(self) -> None:
        """Read the output already in the pipes (a pipe holds 64 KiB; the bound is for a
        grandchild that keeps writing)."""
        if self._stdout is not None:
            self._on_stdout(turns=_DRAIN_CHUNKS)
        if self._stderr is not None:
            self._on_stderr(turns=_DRAIN_CHUNKS)

    def _on_exit(self) -> None:
        assert self._pidfd is not None
        self._exited = True
        self._watcher.remove(self._pidfd)
        if self._killing_group:
            # The leader is a zombie, so its group id is still ours: take the rest of the
            # tree down before the pid can be recycled.
            self._signal_group(signal.SIGKILL)
        if self._reaper is None:
            _, status = os.waitpid(self.pid, 0)  # returns at once: the pidfd said it exited
            self._after_exit(status)
        else:
            self._reaper(self.pid, self._after_exit)

    def _after_exit(self, status: int | None) -> None:
        if status is not None:
            self._record_exit(status)
        if self._frames is not None:
            # what it wrote before exiting is in the pipe (at most a pipe's capacity, 1 MiB;
            # more only from a descendant that keeps writing: bounded all the same)
            self._read_frames(_DRAIN_FRAME_CHUNKS)
        self._drain_output()
        self._close_all_fds()
        if self.tree is not None:
            if self.outcome.limit_exceeded is None and not self.decided.done():
                self.outcome.limit_exceeded = self.tree.exceeded()  # the kernel's (cgroup)
            self.tree.release()
        if not self.decided.done():
            self._decide()
        self.reaped.set_result(None)
        for timer in (self._kill_timer, self._linger_timer):
            if timer is not None:  # a timer per call, cancelled: not 5 s of them in the heap
                timer.cancel()
        self._let_go()

    def _record_exit(self, status: int) -> None:
        if os.WIFSIGNALED(status):
            self.outcome.signal = os.WTERMSIG(status)
        else:
            self.outcome.exit_code = os.waitstatus_to_exitcode(status)

    def _decide(self) -> None:
        self.outcome.partial_frame = self._frame_reader.partial()
        self.outcome.stderr_tail = self._stderr_tail.tail()
        if self._listener is not None:
            self._listener.decided(self.outcome)  # now, not a loop turn later (a done callback)
        self.decided.set_result(self.outcome)
        if self.outcome.frame is None and not self.outcome.frame_too_large:
            return
        if not self.reaped.done():
            # The frame is in; the process should be gone in a moment. If it lingers,
            # only its leader is killed: anything it deliberately left running stays.
            self._linger_timer = self._loop.call_later(
                self._limits.kill_grace_s, self._kill_lingering_leader
            )

    def _kill_lingering_leader(self) -> None:
        if self._pidfd is not None and not self.reaped.done():
            log.warning("pid %d did not exit after writing its result; killing it", self.pid)
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)

    # --- descriptors ----------------------------------------------------------

    def _close_stdin(self) -> None:
        if self._stdin is not None and self._writer_added:
            self._loop.remove_writer(self._stdin)
        self._pending_input = memoryview(b"")
        self._close_fd("_stdin")

    def _close_fd(self, name: str) -> None:
        fd = getattr(self, name)
        if fd is None:
            return
        self._watcher.remove(fd, closing=True)  # ours alone: received, or a pidfd
        setattr(self, name, None)
        os.close(fd)

    def _close_all_fds(self) -> None:
        self._close_stdin()
        for name in ("_frames", "_stdout", "_stderr", "_pidfd"):
            self._close_fd(name)


def _readable(fd: int) -> bool:
    poller = select.poll()  # not select(), which stops at descriptor 1023
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
