"""``follow``: attach to a call already started and read its output as it comes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Unpack

from masterd.call import Deadline, Rounds
from masterd.options import CallOptions, OldWaitKeywords, call_options_of
from masterd.output_events import OutputEvent, events_of
from rpc_client.client import NodeClient
from rpc_client.errors import CallTimeout
from rpc_client.protocol import CallState


class FollowKeywords(OldWaitKeywords, total=False):
    """The keywords of :func:`follow` past the call, for what passes them on
    (:class:`masterd.blocking.Cluster`)."""

    options: CallOptions | None


async def follow(
    node: NodeClient,
    fnc_id: str,
    from_: int = 0,
    timeout: float | None = None,
    *,
    options: CallOptions | None = None,
    **old: Unpack[OldWaitKeywords],
) -> AsyncIterator[OutputEvent]:
    """Each :class:`OutputEvent` of call ``fnc_id`` from position ``from_`` (0: its
    start) on, as it arrives, until the call has finished and all of its output is read.

    The same deadline and retries as :func:`masterd.call.call_function`: each request
    waits on the node at most ``options.wait_s`` (it answers at once when there is output), a
    retried one asks again from the last position, so nothing is shown twice or missed,
    and :class:`CallTimeout` is raised if ``timeout`` passes while the call still runs.
    Its result, afterwards: :func:`masterd.call.wait_for_call`.  The keywords ``wait_s``
    and ``retry`` that ``options`` replaces still work for one release, with a
    DeprecationWarning.
    """
    rounds = Rounds(node, Deadline(timeout), call_options_of("follow", options, old, "wait"))
    last = start = CallState(fnc_id, finished=False)
    async for last in rounds.follow(start, from_):
        for event in events_of(node.name, fnc_id, last.output or {}):
            yield event
    if not last.finished:
        raise CallTimeout(
            f"call {fnc_id} still running after the deadline of {timeout} s",
            fnc_id=fnc_id,
            node=node.name,
        )
