"""``call_function``: run a function on one node, bounded by the caller's deadline.

A call is one StartFunction that waits at most ``wait_s`` on the node, then WaitForFunction
rounds.  No request asks the node to wait past the deadline, and each request's own
client-side timeout is its wait plus a margin, capped at :data:`LATE_S` past the deadline:
the call returns or raises within ``timeout + LATE_S`` whatever the node or network does.

Retries are safe: StartFunction always carries a ``request_id`` and a retried wait uses the
same fnc_id, so an answer lost on the way back never runs the function twice.  Retried:
:class:`ConnectionLost`, :class:`NodeTimeout` (with backoff) and :class:`NodeBusy` (after
its Retry-After), while time is left.  Not retried: :class:`NodeUnreachable` (refused,
unresolvable: the node is down, say so at once), remote request errors, protocol errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Unpack

from masterd.options import (
    DEFAULT_OPTIONS,
    CallOptions,
    OldCallKeywords,
    OldWaitKeywords,
    call_options_of,
)
from masterd.options import RetryPolicy as RetryPolicy  # masterd.RetryPolicy's old home
from masterd.output_events import OutputCallback, events_of
from rpc_client.client import NodeClient
from rpc_client.errors import (
    CallTimeout,
    ConnectionLost,
    NodeBusy,
    NodeRestarted,
    NodeTimeout,
    RPCError,
    UnknownFunctionCall,
    function_error,
)
from rpc_client.logs import event
from rpc_client.protocol import CallState, FncId

log = logging.getLogger("masterd.call")

#: how far past the deadline a request may still run, so that an answer the node sends
#: at the end of a wait capped to the deadline is not mistaken for a silent node
LATE_S = 0.75
#: how long abort_on_timeout waits for the node to confirm an abort; the node starts
#: killing as soon as it reads the request, so this only bounds the confirmation
ABORT_SEND_S = 0.5


class Deadline:
    """The caller's overall deadline; ``None`` means no deadline."""

    def __init__(self, timeout_s: float | None) -> None:
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout_s}")
        self.timeout_s = timeout_s
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def left_s(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())

    @property
    def passed(self) -> bool:
        left = self.left_s()
        return left is not None and left <= 0

    def wait_s(self, wanted_s: float) -> float:
        """The server-side wait of the next request: ``wanted_s``, cut to the time left."""
        left = self.left_s()
        return wanted_s if left is None else min(wanted_s, left)

    def request_timeout_s(self, wait_s: float, margin_s: float) -> float:
        """The client-side bound of a request that waits ``wait_s`` on the node."""
        left = self.left_s()
        bound = wait_s + margin_s
        return bound if left is None else min(bound, left + LATE_S)

    def allows(self, delay_s: float) -> bool:
        """True if a retry after ``delay_s`` still starts before the deadline."""
        left = self.left_s()
        return left is None or left > delay_s


def new_request_id() -> str:
    """A fresh idempotency key for StartFunction: 128 random bits in hex (as a uuid4's
    hex, without building the UUID, which cost a fan-out a sixth of its CPU)."""
    return os.urandom(16).hex()


async def call_function(
    node: NodeClient,
    fn_name: str,
    fn_args: dict[str, Any] | None = None,
    timeout: float | None = None,
    *,
    options: CallOptions | None = None,
    request_id: str | None = None,
    abort_on_timeout: bool = False,
    on_output: OutputCallback | None = None,
    **old: Unpack[OldCallKeywords],
) -> Any:
    """Run ``fn_name`` on ``node`` and return its result.

    Raises :class:`FunctionFailed` (or a class registered for the remote type) if the
    function failed, :class:`CallTimeout` (with ``.fnc_id``) if ``timeout`` passed while it
    still ran, :class:`NodeRestarted` if the daemon restarted and lost the call, and the
    transport errors of :class:`NodeClient` if the node cannot be asked.

    With ``abort_on_timeout``, a call still running at the deadline is sent AbortFunction
    (without waiting more than :data:`ABORT_SEND_S` for the node to confirm) before
    CallTimeout is raised; ``CallTimeout.aborted`` says whether the node confirmed.

    With ``on_output``, the call's output and progress are followed as they happen:
    each :class:`OutputEvent` (tagged with the node's name) is passed to it, in order,
    each once, before the result is returned.

    ``options`` (:class:`CallOptions`) says how the call is made; the keywords
    ``wait_s``, ``abort_after`` and ``retry`` it replaces still work for one release, with
    a :class:`DeprecationWarning`.
    """
    options = call_options_of("call_function", options, old)
    state = await run_call(
        node, fn_name, fn_args, timeout, options, request_id=request_id, on_output=on_output
    )
    try:
        return outcome_of(state, node.name, timeout)
    except CallTimeout as exc:
        if abort_on_timeout:
            exc.aborted = await send_abort(node, state.fnc_id)
        raise


async def send_abort(node: NodeClient, fnc_id: str) -> bool:
    """Ask the node to abort a call; True if it confirmed within ABORT_SEND_S."""
    try:
        await asyncio.wait_for(node.abort_function(fnc_id), ABORT_SEND_S)
    except (RPCError, TimeoutError) as exc:
        event(
            log,
            "call.abort_unconfirmed",
            logging.WARNING,
            node=node.name,
            fnc_id=fnc_id,
            error=str(exc) or type(exc).__name__,
        )
        return False
    return True


async def run_call(
    node: NodeClient,
    fn_name: str,
    fn_args: dict[str, Any] | None = None,
    timeout: float | None = None,
    options: CallOptions = DEFAULT_OPTIONS,
    *,
    request_id: str | None = None,
    on_progress: Callable[[CallState], None] | None = None,
    on_output: OutputCallback | None = None,
) -> CallState:
    """Start and poll a call until it finishes or ``timeout`` passes; its last state.

    ``on_progress`` sees every state that is not finished yet; ``on_output`` every event
    of its output, as in :func:`call_function`.
    """
    rounds = Rounds(node, Deadline(timeout), options)
    request_id = request_id or new_request_id()
    # Following output, the start answers at once: its wait would end only at the result.
    state = await rounds.run(
        lambda wait, bound: node.start_function(
            fn_name, fn_args, timeout=0 if on_output else wait,
            abort_after=options.abort_after_s, request_id=request_id, request_timeout_s=bound,
        ),
        what=f"StartFunction {fn_name} request_id={request_id}",
    )  # fmt: skip
    return await rounds.poll(state, on_progress, on_output)


async def resume_call(
    node: NodeClient,
    fnc_id: str,
    timeout: float | None,
    options: CallOptions = DEFAULT_OPTIONS,
    *,
    on_output: OutputCallback | None = None,
) -> CallState:
    """Wait for a call started earlier (by a master that died, say) until it finishes or
    ``timeout`` passes; its last state.  With ``on_output``, its output from the start."""
    rounds = Rounds(node, Deadline(timeout), options)
    return await rounds.poll(await rounds.wait(fnc_id), None, on_output)


async def wait_for_call(
    node: NodeClient,
    fnc_id: str,
    timeout: float | None = None,
    *,
    options: CallOptions | None = None,
    **old: Unpack[OldWaitKeywords],
) -> Any:
    """Wait again for a call already started (say, after a :class:`CallTimeout`).

    Returns its result or raises as :func:`call_function` does.  ``options`` as there
    (its ``abort_after_s`` is a start's, and not used here); the keywords ``wait_s`` and
    ``retry`` it replaces still work for one release, with a DeprecationWarning.
    """
    options = call_options_of("wait_for_call", options, old, takes="wait")
    rounds = Rounds(node, Deadline(timeout), options)
    state = await rounds.poll(await rounds.wait(fnc_id))
    return outcome_of(state, node.name, timeout)


def outcome_of(state: CallState, node: str, timeout: float | None) -> Any:
    """The result of a call state, or the exception it stands for."""
    if not state.finished:
        raise CallTimeout(
            f"call {state.fnc_id} still running after the deadline of {timeout} s",
            fnc_id=state.fnc_id,
            node=node,
        )
    if state.error is not None:
        raise function_error(state.error, fnc_id=state.fnc_id, node=node)
    return state.result


Request = Callable[[float, float], Awaitable[CallState]]


class CallFunctionKeywords(OldCallKeywords, total=False):
    """The keywords of :func:`call_function` past the call itself, for what passes them
    on (:class:`masterd.Cluster`, :class:`masterd.blocking.Cluster`)."""

    options: CallOptions | None
    request_id: str | None
    abort_on_timeout: bool
    on_output: OutputCallback | None


def check_client(node: object) -> None:
    """``TypeError`` unless ``node`` is a :class:`NodeClient`, saying what to pass instead
    of a :class:`masterd.node.Node` (a nodes-file entry: no connection, no timeouts)."""
    if isinstance(node, NodeClient):
        return
    name = getattr(node, "name", None)
    raise TypeError(
        f"expected a NodeClient, got {type(node).__name__} {name or node!r}: a Node of a "
        "Cluster is only where a node is; call cluster.call_function(node, ...) (also "
        "cluster.call_many, cluster.gather), or pass cluster.client(node), the node's "
        "client with the cluster's TLS, timeouts and connections"
    )


class Rounds:
    """The requests of one call: waits cut to the deadline, safe retries."""

    def __init__(self, node: NodeClient, deadline: Deadline, options: CallOptions) -> None:
        check_client(node)
        self.node = node
        self.deadline = deadline
        self.wait_s = options.wait_s
        self.retry = options.retry

    async def poll(
        self,
        state: CallState,
        on_progress: Callable[[CallState], None] | None = None,
        on_output: OutputCallback | None = None,
    ) -> CallState:
        """WaitForFunction rounds until the call finishes or the deadline passes; with
        ``on_output``, its output is followed from the start, every event passed on."""
        if on_output is None:
            while not state.finished and not self.deadline.passed:
                if on_progress is not None:
                    on_progress(state)
                state = await self.wait(state.fnc_id)
            return state
        if on_progress is not None and not state.finished:
            on_progress(state)
        last = state
        async for last in self.follow(state, 0):
            if on_progress is not None and not last.finished:
                on_progress(last)
            for output_event in events_of(self.node.name, last.fnc_id, last.output or {}):
                on_output(output_event)
        return last

    async def follow(self, state: CallState, position: int) -> AsyncIterator[CallState]:
        """The states of WaitForFunction rounds that read the output from ``position``,
        until the call finished and its output is read, or the deadline passed.  A
        retried request asks again from the same position: nothing is seen twice."""
        while not (state.finished and position >= state.output_next) and not (self.deadline.passed):
            state = await self.wait(state.fnc_id, position)
            output = state.output
            if output is None:  # a node of protocol 1.0: no output to follow
                yield state
                return
            stuck = output["next"] <= position and not output["events"] and state.finished
            position = max(position, output["next"])
            yield state
            if stuck:  # finished, and the node has nothing more to give from here
                return

    async def wait(self, fnc_id: str, output_from: int | None = None) -> CallState:
        try:
            return await self.run(
                lambda wait, bound: self.node.wait_for_function(
                    fnc_id, timeout=wait, output_from=output_from, request_timeout_s=bound
                ),
                what=f"WaitForFunction {fnc_id}",
            )
        except UnknownFunctionCall as exc:
            raise await self._restarted(fnc_id, exc) or exc from None

    async def run(self, request: Request, *, what: str) -> CallState:
        attempt = 0
        while True:
            wait = self.deadline.wait_s(self.wait_s)
            bound = self.deadline.request_timeout_s(wait, self.node.timeouts.margin_s)
            try:
                return await request(wait, bound)
            except (ConnectionLost, NodeTimeout, NodeBusy) as exc:
                attempt += 1
                delay = self._delay(exc, attempt)
                if delay is None:
                    raise
                event(
                    log,
                    "call.retry",
                    logging.WARNING,
                    node=self.node.name,
                    request=what,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=str(exc),
                )
                await asyncio.sleep(delay)

    def _delay(self, exc: RPCError, attempt: int) -> float | None:
        """How long to wait before the next attempt, or None to give up."""
        delay = self.retry.backoff_s(attempt)
        if isinstance(exc, NodeBusy) and exc.retry_after_s is not None:
            delay = exc.retry_after_s
        if self.deadline.timeout_s is None:
            return delay if attempt < self.retry.attempts_without_deadline else None
        return delay if self.deadline.allows(delay) else None

    async def _restarted(self, fnc_id: str, exc: UnknownFunctionCall) -> NodeRestarted | None:
        """NodeRestarted if the node's daemon is not the one that started the call."""
        try:
            pid = (await asyncio.wait_for(self.node.identify(), LATE_S + 1.0)).get("pid")
        except (RPCError, TimeoutError):
            return None
        started_by = FncId.parse(fnc_id).ppid
        if pid == started_by:
            return None
        return NodeRestarted(
            f"the daemon on {self.node.name} restarted (pid {started_by} is now {pid}); "
            f"call {fnc_id} is gone with it and its result is lost: {exc.message}",
            node=self.node.name,
        )
