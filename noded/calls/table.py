"""Function calls: their state, the table of running and retained calls, request ids.

A call is running until its result is decided, then retained for ``result_ttl_s``, at
most ``max_retained`` calls and ``max_retained_bytes`` of their records (oldest dropped
first; the newest is always kept).  A bounded memory of dropped ids
lets UnknownFunctionCall say *why* a call is unknown; the request_ids of calls an earlier
daemon lost still name them (:mod:`noded.calls.lost`).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from noded.calls.lost import LostCall, LostCalls
from noded.calls.output_log import OutputLog, OutputPage
from rpc_client.errors import RequestIdConflict, UnknownFunctionCall
from rpc_client.protocol import CallState, FncId

AbortReason = Literal["abort_after", "aborted", "shutdown"]


def args_digest(fn_name: str, fn_args: dict[str, Any]) -> bytes:
    """A digest of a call, for request_id conflict checks: equal for calls whose name and
    arguments are equal as JSON values (key order aside, ``1`` and ``1.0`` alike)."""
    canonical = {"fn_name": fn_name, "fn_args": _as_json_values(fn_args)}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()


def _as_json_values(value: Any) -> Any:
    """``value`` with every whole float that is exactly an integer written as one."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOATS:
        return int(value)
    if isinstance(value, dict):
        return {key: _as_json_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_json_values(item) for item in value]
    return value


#: the integers a float holds exactly
_EXACT_FLOATS = 2**53


def request_key(request_id: str | None, owner: str | None) -> str | None:
    """How the table keys a request_id: with its owner's name when calls have owners
    (under a policy), so that one client's key never finds another's call."""
    if request_id is None or owner is None:
        return request_id
    return f"{owner}\0{request_id}"


@dataclass(eq=False)
class FunctionCall:
    """One call: who runs it, and its result once decided."""

    fnc_id: str
    fn_name: str
    pid: int
    started: float
    request_id: str | None = None
    digest: bytes = b""
    #: who started it (Caller.name), when the daemon knows (a policy or an audit log)
    owner: str | None = None
    #: its request_id as the table keys it: per owner under a policy (see request_key)
    request_key: str | None = None
    #: which incarnation of ``pid`` ran it (process_birth), to recognise it after a crash
    pid_birth: str | None = None
    #: its cgroup (noded.process.tree), to kill what it left after a crash
    cgroup: str | None = None
    #: the size of its finish record, once finished: what keeping its result costs
    record_bytes: int = 0
    finished_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    abort_reason: AbortReason | None = None
    #: what its process wrote; None until it writes something
    output: OutputLog | None = None
    #: the latest progress report ``{"fraction", "message", "at"}``
    progress: dict[str, Any] | None = None
    #: the requests waiting for this call's result, each woken once it is in
    _waiters: set[asyncio.Future[None]] = field(default_factory=set, repr=False)
    #: the requests waiting for its output (or its result), woken by either
    _output_waiters: set[asyncio.Future[None]] = field(default_factory=set, repr=False)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def elapsed_s(self) -> float:
        return (self.finished_at or time.time()) - self.started

    @property
    def output_next(self) -> int:
        """The position just past its output so far (0: it printed nothing)."""
        return self.output.next if self.output is not None else 0

    def state(self) -> CallState:
        return CallState(
            self.fnc_id, self.finished, self.result, self.error, self.progress, self.output_next
        )

    def read_output(self, position: int, max_bytes: int) -> OutputPage:
        """Its output from ``position`` on (see :meth:`OutputLog.read`)."""
        if self.output is None:
            return OutputPage(start=0, next=0, skipped=0)
        return self.output.read(position, max_bytes)

    def finish(self, result: Any, error: dict[str, Any] | None) -> None:
        self.result, self.error = result, error
        self.finished_at = time.time()
        _wake_all(self._waiters)
        _wake_all(self._output_waiters)

    def output_changed(self) -> None:
        """Wake the requests waiting for output: some came."""
        _wake_all(self._output_waiters)

    async def wait(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the result; returns early once it is in.

        One future per waiting request, woken directly by :meth:`finish` (no task or
        event in between: the answer leaves in the loop turn after the result came in).
        """
        if not self.finished:
            await _wait_in(self._waiters, timeout_s)

    async def wait_for_output(self, position: int, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for output or progress past ``position``, or the
        result; returns at once if there is some already."""
        if not self.finished and self.output_next <= position:
            await _wait_in(self._output_waiters, timeout_s)


async def _wait_in(waiters: set[asyncio.Future[None]], timeout_s: float) -> None:
    if timeout_s <= 0:
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    timer = loop.call_later(timeout_s, _wake, waiter)
    waiters.add(waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        waiters.discard(waiter)


def _wake_all(waiters: set[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class CallTable:
    """Running and retained calls by fnc_id and by request_id."""

    def __init__(
        self,
        *,
        daemon_pid: int,
        result_ttl_s: float,
        max_retained: int,
        max_retained_bytes: int | None = None,
        on_forget: Callable[[FunctionCall], None] | None = None,
        on_forget_lost: Callable[[str], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
    ) -> None:
        self._daemon_pid = daemon_pid
        self._on_forget = on_forget
        self._ttl_s = result_ttl_s
        self._max_retained = max_retained
        self._max_retained_bytes = max_retained_bytes
        #: called with the limit's name when a call is dropped at it, before its TTL
        self._on_dropped = on_dropped
        #: the record_bytes of the retained calls
        self.retained_bytes = 0
        self.running: dict[str, FunctionCall] = {}
        self.retained: collections.OrderedDict[str, FunctionCall] = collections.OrderedDict()
        self._by_request_id: dict[str, FunctionCall] = {}
        self._dropped: collections.OrderedDict[str, str] = collections.OrderedDict()
        #: calls an earlier daemon lost, by request key: their keys still name them
        self.lost = LostCalls(ttl_s=result_ttl_s, max_kept=max_retained, on_forget=on_forget_lost)

    def __len__(self) -> int:
        return len(self.running) + len(self.retained)

    def all_calls(self) -> list[FunctionCall]:
        return [*self.running.values(), *self.retained.values()]

    def add(self, call: FunctionCall) -> None:
        self.running[call.fnc_id] = call
        if call.request_key is not None:
            self._by_request_id[call.request_key] = call

    def get(self, fnc_id: FncId) -> FunctionCall:
        """The call, or :class:`UnknownFunctionCall` saying why it is not known."""
        key = str(fnc_id)
        call = self.running.get(key) or self.retained.get(key)
        if call is not None:
            return call
        raise UnknownFunctionCall(self._why_unknown(fnc_id))

    def by_request_id(self, request_key: str, digest: bytes) -> FunctionCall | None:
        """The call already made with this key (:func:`request_key`), if any; 409 if it
        was another call; 404 if an earlier daemon lost it (:mod:`noded.calls.lost`)."""
        call = self._by_request_id.get(request_key)
        if call is None:
            self.lost.check(request_key, digest)
        if call is not None and call.digest != digest:
            raise RequestIdConflict(
                f"request_id {call.request_id!r} was used by call {call.fnc_id} "
                f"({call.fn_name}) with other arguments"
            )
        return call

    def retain(self, call: FunctionCall) -> None:
        """Move a call whose result is in from running to retained."""
        self.running.pop(call.fnc_id, None)
        self.retained[call.fnc_id] = call
        self.retained_bytes += call.record_bytes
        while over := self._over_limit():
            limit, why = over
            self._forget(self._pop_oldest(), f"dropped, over the limit of {why}")
            if self._on_dropped is not None:
                self._on_dropped(limit)

    def _over_limit(self) -> tuple[str, str] | None:
        """The limit the retained calls are over, and how to say it; None if none."""
        if len(self.retained) > self._max_retained:
            return "max_retained", f"{self._max_retained} kept results (--max-retained)"
        bound = self._max_retained_bytes
        if bound is not None and self.retained_bytes > bound and len(self.retained) > 1:
            return "max_retained_bytes", f"{bound} bytes of kept results (--max-retained-bytes)"
        return None

    def _pop_oldest(self) -> FunctionCall:
        _, oldest = self.retained.popitem(last=False)
        self.retained_bytes -= oldest.record_bytes
        return oldest

    def expire(self, now: float) -> int:
        """Drop retained calls (and lost ones) older than the TTL; returns how many
        retained calls went."""
        self.lost.expire(now)
        count = 0
        while self.retained:
            call = next(iter(self.retained.values()))
            if call.finished_at is None or now - call.finished_at < self._ttl_s:
                break
            self._pop_oldest()
            self._forget(call, f"its result expired (results are kept {self._ttl_s:g} s)")
            count += 1
        return count

    def restore(self, call: FunctionCall) -> None:
        """Keep a finished call recovered from an earlier daemon (oldest first)."""
        self.add(call)
        self.retain(call)

    def take_over(
        self,
        finished: list[FunctionCall],
        lost: list[LostCall],
        key_of: Callable[[str | None, str | None], str | None],
    ) -> None:
        """Keep what an earlier daemon left: its finished calls and the calls it lost,
        each oldest first; ``key_of(request_id, owner)`` is a call's request key."""
        for call in finished:
            call.request_key = key_of(call.request_id, call.owner)
            self.restore(call)
        for one in lost:
            self.remember_lost(one.fnc_id, one.why)
            key = key_of(one.request_id, one.owner)
            if key is not None:
                self.lost.keep(one, key)

    def remember_lost(self, fnc_id: str, why: str) -> None:
        """Say ``why`` when asked for a call that cannot be answered any more."""
        self._dropped[fnc_id] = why
        while len(self._dropped) > self._max_retained:
            self._dropped.popitem(last=False)

    def _forget(self, call: FunctionCall, why: str) -> None:
        if call.request_key is not None and self._by_request_id.get(call.request_key) is call:
            del self._by_request_id[call.request_key]
        self.remember_lost(call.fnc_id, why)
        if self._on_forget is not None:
            self._on_forget(call)

    def _why_unknown(self, fnc_id: FncId) -> str:
        why = self._dropped.get(str(fnc_id))
        if why is not None:
            return f"call {fnc_id} is no longer known here: {why}"
        if fnc_id.ppid != self._daemon_pid:
            return (
                f"call {fnc_id} was started by an earlier ganeti-noded process "
                f"(pid {fnc_id.ppid}; this one is {self._daemon_pid}): it was lost in a restart"
            )
        return f"call {fnc_id} was never started here, or its result expired long ago"


def lost_in_a_crash(was_running: bool, daemon_pid: int) -> str:
    """Why a call the daemon before this one never saw finish is gone."""
    if was_running:
        return (
            "it was still running when the ganeti-noded that started it stopped; "
            f"ganeti-noded {daemon_pid} killed what was left of it at start-up"
        )
    return (
        "the ganeti-noded that started it stopped before it finished, and it had ended "
        f"by the time ganeti-noded {daemon_pid} started: its result was lost"
    )
