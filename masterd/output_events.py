"""A call's output as the master sees it: one :class:`OutputEvent` per chunk of stdout or
stderr, progress report, or gap, tagged with the node and the call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Stream = Literal["stdout", "stderr", "progress", "skipped"]


@dataclass(frozen=True)
class OutputEvent:
    """What a function wrote, or reported, as it happened.

    ``stream`` is ``stdout`` or ``stderr`` (``text`` is what arrived, not necessarily
    whole lines), ``progress`` (``fraction`` 0..1 or None, ``text`` the message), or
    ``skipped``: ``skipped`` bytes of output the node no longer held (its
    ``--max-output-bytes`` kept only the newest) stand here.
    """

    node: str
    fnc_id: str
    stream: Stream
    text: str = ""
    fraction: float | None = None
    skipped: int = 0


OutputCallback = Callable[[OutputEvent], None]


def events_of(node: str, fnc_id: str, output: dict[str, Any]) -> list[OutputEvent]:
    """The events of one answer's ``output`` object, a gap first if there was one."""
    events = []
    if output.get("skipped"):
        events.append(OutputEvent(node, fnc_id, "skipped", skipped=int(output["skipped"])))
    for event in output.get("events", []):
        stream = event.get("stream")
        if stream in ("stdout", "stderr", "progress"):
            events.append(
                OutputEvent(node, fnc_id, stream, str(event.get("text", "")), event.get("fraction"))
            )
    return events
