"""``call_function``: run a function on one node, bounded by the caller's deadline.

The call starts with one StartFunction that waits at most ``wait_s`` on the node, then
polls with WaitForFunction rounds.  No request waits past the deadline, and each
request's own client-side timeout is its wait plus a margin capped by the time left (at
least :data:`MIN_MARGIN_S`), so the call returns or raises within ``timeout`` plus that
small margin, whatever the node or the network does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from rpc_client.client import NodeClient
from rpc_client.errors import CallTimeout, FunctionFailed
from rpc_client.protocol import CallState

DEFAULT_WAIT_S = 10.0
#: the least slack a request gets past its server-side wait, so that an answer sent at the
#: end of that wait is not mistaken for a silent node
MIN_MARGIN_S = 1.0


class Deadline:
    """The caller's overall deadline; ``None`` means no deadline."""

    def __init__(self, timeout_s: float | None) -> None:
        if timeout_s is not None and timeout_s < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout_s}")
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
        if left is not None:
            margin_s = min(margin_s, max(left - wait_s, MIN_MARGIN_S))
        return wait_s + margin_s


def new_request_id() -> str:
    """A fresh idempotency key for StartFunction."""
    return uuid.uuid4().hex


async def call_function(
    node: NodeClient,
    fn_name: str,
    fn_args: dict[str, Any] | None = None,
    timeout: float | None = None,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    abort_after: float | None = None,
    request_id: str | None = None,
) -> Any:
    """Run ``fn_name`` on ``node`` and return its result.

    Raises :class:`FunctionFailed` if the function failed, :class:`CallTimeout` (with
    ``.fnc_id``) if ``timeout`` passed while it still ran, and the transport errors of
    :class:`NodeClient` if the node cannot be asked.
    """
    state = await run_call(
        node,
        fn_name,
        fn_args,
        timeout,
        wait_s=wait_s,
        abort_after=abort_after,
        request_id=request_id,
    )
    return outcome_of(state, node.name, timeout)


async def run_call(
    node: NodeClient,
    fn_name: str,
    fn_args: dict[str, Any] | None = None,
    timeout: float | None = None,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    abort_after: float | None = None,
    request_id: str | None = None,
    on_progress: Callable[[CallState], None] | None = None,
) -> CallState:
    """Start and poll a call until it finishes or ``timeout`` passes; its last state.

    ``on_progress`` sees every state that is not finished yet.
    """
    if wait_s <= 0:
        raise ValueError(f"wait_s must be > 0, got {wait_s}")
    deadline = Deadline(timeout)
    wait = deadline.wait_s(wait_s)
    state = await node.start_function(
        fn_name,
        fn_args,
        timeout=wait,
        abort_after=abort_after,
        request_id=request_id or new_request_id(),
        request_timeout_s=deadline.request_timeout_s(wait, node.timeouts.margin_s),
    )
    while not state.finished and not deadline.passed:
        if on_progress is not None:
            on_progress(state)
        wait = deadline.wait_s(wait_s)
        state = await node.wait_for_function(
            state.fnc_id,
            timeout=wait,
            request_timeout_s=deadline.request_timeout_s(wait, node.timeouts.margin_s),
        )
    return state


def outcome_of(state: CallState, node: str, timeout: float | None) -> Any:
    """The result of a call state, or the exception it stands for."""
    if not state.finished:
        raise CallTimeout(
            f"call {state.fnc_id} still running after the deadline of {timeout} s",
            fnc_id=state.fnc_id,
            node=node,
        )
    if state.error is not None:
        raise FunctionFailed(state.error, fnc_id=state.fnc_id, node=node)
    return state.result
