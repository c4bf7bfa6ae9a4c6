"""``ForkSpawner``: function processes forked by the fork server, a few kept ready ahead.

A call takes a spare child whose pipes the daemon already holds and only writes its
request; the pool is refilled off the request's path.  Spare children are not calls: they
are not counted, not listed, and they leave as soon as their stdin closes (the daemon
releasing them, or dying).  Children are reaped by the fork server when the daemon, which sees
their exit through a pidfd, asks for their status (see :mod:`noded.process.child.fork_server`).

If the fork server dies, a new one is started; calls already running go on, since their pipes
are the daemon's (only their exit status is lost).  If none can be started, the daemon
falls back to an interpreter per call (:class:`ExecSpawner`) and says so in its log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import logging
import os
import socket
from collections.abc import Callable

from noded.process.child import fork_server
from noded.process.fork_server_process import ForkServerProcess, not_ready_reason, receive_answer
from noded.process.function import FunctionProcess, ProcessLimits
from noded.process.outbox import Outbox
from noded.process.spawners import ExecSpawner, close_all
from noded.process.tree import CallTrees, confine
from noded.process.watcher import DescriptorWatcher
from rpc_client.logs import RateLimit, event

log = logging.getLogger("noded.forkserver")

#: how long a new fork server may take to import the function modules, unless told
_READY_TIMEOUT_S = 30.0
_FORK_TIMEOUT_S = 10.0
_REAP_TIMEOUT_S = 5.0
_STOP_TIMEOUT_S = 5.0
_MAX_FDS = 4
_SEND_ATTEMPTS = 3
#: the longest answer of the fork server: the statuses of one datagram's reaps
_ANSWER_BYTES = 2 * fork_server.MAX_DATAGRAM
#: forks asked and none answered for this long: the fork server is stopped or hung
_HUNG_S = 3.0


class ForkServerError(RuntimeError):
    """Raised when the fork server cannot be started."""


class ForkSpawner:
    """Spawner that forks from a pre-loaded fork server and keeps ``spares`` children ready."""

    def __init__(
        self,
        modules: list[str],
        limits: ProcessLimits,
        *,
        spares: int = 4,
        on_restart: Callable[[], None] | None = None,
        trees: CallTrees | None = None,
        ready_timeout_s: float = _READY_TIMEOUT_S,
    ) -> None:
        self._modules = modules
        self._ready_timeout_s = ready_timeout_s
        self._limits = limits
        self._spares_wanted = spares
        self._on_restart = on_restart
        self._trees = trees
        self._loop = asyncio.get_running_loop()
        self._pool: collections.deque[FunctionProcess] = collections.deque()
        self._waiting: collections.deque[asyncio.Future[FunctionProcess]] = collections.deque()
        self._forks_asked = 0
        #: pid -> (what gets its status, the timer that gives up on it)
        self._reaps: dict[int, tuple[Callable[[int | None], None], asyncio.TimerHandle]] = {}
        self._outbox = Outbox()
        self._control: socket.socket | None = None
        self._server: ForkServerProcess | None = None
        self._fallback: ExecSpawner | None = None
        self._closing = False
        self._retired = False
        self._restart_task: asyncio.Task[None] | None = None
        self._watcher = DescriptorWatcher()
        #: loop time of the fork server's last answer, or of the first fork asked since
        self._last_answer = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # --- the Spawner interface ------------------------------------------------------

    async def take(self) -> FunctionProcess:
        """A spare (or a child forked now) waiting for its call, confined.

        A spare that left before it was taken never saw a call: the next is taken.  The
        pool is refilled once this process's outcome is decided, off the request's path
        (at once if it ran empty).
        """
        if self._fallback is not None:
            return await self._fallback.take()
        for _ in range(_SEND_ATTEMPTS):
            proc = self._take_spare()  # one still waiting for a call (asked just now)
            if proc is None:
                proc = await self._fork_now()
                if not proc.waiting_for_call:  # gone at once
                    event(log, "spare.gone", logging.WARNING, pid=proc.pid)
                    continue
            if self._trees is not None:
                proc.tree = confine(self._trees, proc.pid, proc.birth)
            if self._pool:
                proc.decided.add_done_callback(lambda _: self._refill())
            else:
                self._refill()
            return proc
        raise OSError(errno.EAGAIN, "function processes leave before they get their call")

    def _take_spare(self) -> FunctionProcess | None:
        while self._pool:
            proc = self._pool.popleft()
            if proc.waiting_for_call:
                return proc
            event(log, "spare.gone", logging.WARNING, pid=proc.pid)  # its reaping goes on
        return None

    def retire(self) -> None:
        """A reload replaced this fork server: its spares leave now (it stays while a call
        it made runs, or one it is making is not yet made), and none is forked again."""
        self._retired = True
        self._spares_wanted = 0
        while self._pool:
            self._release(self._pool.popleft())

    def _release(self, proc: FunctionProcess) -> None:
        """Let a spare go: it reads EOF and leaves, and its fork server reaps it then."""
        proc.discard()
        self._outbox.put(fork_server.PID.pack(fork_server.REAP, proc.pid))

    async def close(self) -> None:
        """Release the spares, stop the fork server."""
        self._closing = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._discard_pool()
        self._fail_waiting(ConnectionError("ganeti-noded is stopping"))
        self._outbox.flush()  # the reaps asked for
        self._outbox.detach()
        if self._control is not None:
            self._loop.remove_reader(self._control.fileno())
            self._control.close()  # the fork server reads EOF and leaves
            self._control = None
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._server.exited), _STOP_TIMEOUT_S)
            await self._server.stop(_STOP_TIMEOUT_S)
        self._watcher.close()

    # --- starting the fork server ----------------------------------------------------------

    async def start(self) -> None:
        """Start the fork server and wait until its modules are imported; fill the pool."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._server = ForkServerProcess.start(self._modules, theirs.fileno())
        finally:
            theirs.close()
        failure: BaseException | None = None
        try:
            ready = await asyncio.wait_for(self._loop.sock_recv(ours, 64), self._ready_timeout_s)
        except (TimeoutError, OSError) as exc:
            ready, failure = b"", exc
        except asyncio.CancelledError:  # a reload given up (the daemon stops): no fork server left
            ours.close()
            self._server.kill()
            raise
        if ready != fork_server.READY:
            ours.close()
            await self._server.stop(_STOP_TIMEOUT_S)
            raise ForkServerError(not_ready_reason(failure, self._ready_timeout_s)) from failure
        ours.setblocking(False)
        self._control = ours
        self._forks_asked = 0
        self._outbox.attach(ours)
        self._loop.add_reader(ours.fileno(), self._on_message)
        self._server.exited.add_done_callback(self._on_fork_server_exit)
        event(log, "forkserver.ready", pid=self._server.pid, spares=self._spares_wanted)
        self._refill()

    # --- forking and reaping ------------------------------------------------------------

    async def _fork_now(self) -> FunctionProcess:
        waiter: asyncio.Future[FunctionProcess] = self._loop.create_future()
        self._waiting.append(waiter)
        if self._control is not None:  # else the fork server restarts, and its refill serves us
            self._ask_fork(now=True)
        timer = self._loop.call_later(_FORK_TIMEOUT_S, _give_up_on, waiter)
        try:
            return await waiter  # (a timer, not wait_for: no task and futures of its own)
        finally:
            timer.cancel()

    def _refill(self) -> None:
        """Ask for the forks that make up the pool and serve every waiting spawn."""
        if self._control is None or self._closing:
            return
        while len(self._pool) + self._forks_asked - len(self._waiting) < self._spares_wanted:
            self._ask_fork()

    def _ask_fork(self, *, now: bool = False) -> None:
        if self._forks_asked == 0:  # the fork server owes nothing: its clock starts now
            self._last_answer = self._loop.time()
        self._forks_asked += 1
        self._outbox.put(fork_server.FORK, now=now)
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(_HUNG_S, self._check_answering)

    def _check_answering(self) -> None:
        """A fork server that owes forks and has said nothing for _HUNG_S (stopped, a hung
        import, a deadlock) is killed: its exit restarts it."""
        self._watchdog = None
        if self._control is None or self._closing or self._forks_asked <= 0:
            return
        silent_s = self._loop.time() - self._last_answer
        if silent_s < _HUNG_S:
            self._watchdog = self._loop.call_later(_HUNG_S - silent_s, self._check_answering)
            return
        assert self._server is not None
        event(log, "forkserver.hung", logging.ERROR, pid=self._server.pid,
              silent_s=round(silent_s, 3), forks_asked=self._forks_asked)  # fmt: skip
        self._server.kill()

    def reap(self, pid: int, on_status: Callable[[int | None], None]) -> None:
        """Ask the fork server to reap an exited child; ``on_status`` gets its wait status, or
        None if it was lost (the fork server gone, or no answer within _REAP_TIMEOUT_S)."""
        if self._control is None:
            on_status(None)
            return
        timer = self._loop.call_later(_REAP_TIMEOUT_S, self._reaped, pid, None)
        self._reaps[pid] = (on_status, timer)
        self._outbox.put(fork_server.PID.pack(fork_server.REAP, pid))

    def _reap_child_of(
        self, parent: ForkServerProcess | None, pid: int, on_status: Callable[[int | None], None]
    ) -> None:
        """Ask ``parent`` to reap its child ``pid``.  If that fork server is gone, init
        took the child and its status is lost: no later fork server is asked, for whom the
        pid may name a child of its own by now (it would wait for that child)."""
        if parent is not self._server:
            on_status(None)
            return
        self.reap(pid, on_status)

    def _reaped(self, pid: int, status: int | None) -> None:
        waiting = self._reaps.pop(pid, None)
        if waiting is not None:
            on_status, timer = waiting
            timer.cancel()
            on_status(status)

    def _on_message(self) -> None:
        assert self._control is not None
        while self._control is not None:
            try:
                message, fds = receive_answer(self._control, _ANSWER_BYTES, _MAX_FDS)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:
                self._lost_fork_server()
                return
            self._last_answer = self._loop.time()
            self._handle(message, fds)

    def _handle(self, message: bytes, fds: list[int]) -> None:
        kind = message[:1]
        if kind == fork_server.CHILD:
            _, pid = fork_server.PID.unpack(message)
            self._forks_asked = max(0, self._forks_asked - 1)
            self._adopt(pid, fds)
        elif kind == fork_server.FAILED:
            _, number = fork_server.PID.unpack(message)
            self._forks_asked = max(0, self._forks_asked - 1)
            if _fork_failures.allow():  # a shortage fails every fork: one line in 10 s
                event(log, "spawn.failed", logging.WARNING, error=os.strerror(number),
                      suppressed=_fork_failures.take_suppressed())  # fmt: skip
            self._fail_one_waiter(
                OSError(number, f"the fork server could not fork: {os.strerror(number)}")
            )
        elif kind == fork_server.STATUS:
            for _, pid, status in fork_server.PID_STATUS.iter_unpack(message):
                self._reaped(pid, status if status >= 0 else None)

    def _adopt(self, pid: int, fds: list[int]) -> None:
        """Watch a new child from now on, so that one dying in the pool is noticed."""
        try:
            if len(fds) != _MAX_FDS:
                raise OSError(errno.EMFILE, f"{len(fds)} of a child's {_MAX_FDS} pipes arrived")
            pipes = (fds[0], fds[1], fds[2], fds[3])
            reaper = functools.partial(self._reap_child_of, self._server)
            proc = FunctionProcess(pid, pipes, self._limits, self._watcher, reaper)
        except (OSError, ValueError) as exc:  # no descriptor left for its pidfd: let it go
            close_all(*fds)
            # it leaves: stdin is closed
            self._outbox.put(fork_server.PID.pack(fork_server.REAP, pid))
            self._fail_one_waiter(exc)
            return
        proc.watch()
        proc.decided.add_done_callback(lambda _: self._spare_gone(proc))
        self._deliver(proc)

    def _spare_gone(self, proc: FunctionProcess) -> None:
        if proc in self._pool:
            self._pool.remove(proc)
            event(log, "spare.gone", logging.WARNING, pid=proc.pid)
            self._refill()

    def _discard_pool(self) -> None:
        while self._pool:
            self._pool.popleft().discard()

    def _next_waiter(self) -> asyncio.Future[FunctionProcess] | None:
        """The oldest spawn still waiting for a child (one that timed out is skipped)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                return waiter
        return None

    def _deliver(self, proc: FunctionProcess) -> None:
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(proc)
        elif self._closing:
            proc.discard()
        elif self._retired:
            self._release(proc)
        else:
            self._pool.append(proc)

    # --- when the fork server dies -------------------------------------------------------------

    def _on_fork_server_exit(self, _: asyncio.Future[int]) -> None:
        if self._control is not None:
            self._lost_fork_server()

    def _lost_fork_server(self) -> None:
        if self._control is None:
            return
        self._loop.remove_reader(self._control.fileno())
        self._outbox.detach()  # what waits was meant for the dead fork server
        self._control.close()
        self._control = None
        for pid in list(self._reaps):
            self._reaped(pid, None)  # exit statuses of its children are lost with it
        self._discard_pool()  # its spares: no status could ever be had for them
        if self._closing:
            return
        event(log, "forkserver.died", logging.ERROR, pid=self._server.pid if self._server else None)
        self._restart_task = self._loop.create_task(self._restart())

    async def _restart(self) -> None:
        if self._on_restart is not None:
            self._on_restart()
        if self._server is not None:
            await self._server.stop(_STOP_TIMEOUT_S)
        try:
            await self.start()
        except (ForkServerError, OSError) as exc:
            event(log, "spawn.fallback", logging.ERROR, method="exec", error=str(exc))
            self._fallback = ExecSpawner(self._modules, self._limits, self._watcher, self._trees)
            self._fail_waiting(OSError(errno.EAGAIN, "the fork server is gone"))

    def _fail_one_waiter(self, exc: BaseException) -> None:
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_exception(exc)

    def _fail_waiting(self, exc: BaseException) -> None:
        while self._waiting:
            self._fail_one_waiter(exc)


#: forks the fork server could not make, logged at most once per 10 s (the rest counted)
_fork_failures = RateLimit(10.0)


def _give_up_on(waiter: asyncio.Future[FunctionProcess]) -> None:
    if not waiter.done():
        waiter.set_exception(OSError(errno.EAGAIN, "the fork server did not answer in time"))
