"""A :class:`~noded.process.function.CallListener` for tests that start processes
themselves: it keeps what it is told."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from noded.process.outcome import CallListener, Outcome


@dataclass
class KeepingListener:
    """Keeps every outcome, output chunk, progress report and event it hears."""

    outcomes: list[Outcome] = field(default_factory=list)
    #: each outcome's result frame as it was decided (a reaped process lets it go)
    frames: list[bytes | None] = field(default_factory=list)
    outputs: list[tuple[str, bytes]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def decided(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.frames.append(outcome.frame)

    def output(self, stream: str, data: bytes) -> None:
        self.outputs.append((stream, data))

    def progress(self, report: dict[str, Any]) -> None:
        self.reports.append(report)

    def event(self, report: dict[str, Any]) -> None:
        self.events.append(report)


#: mypy checks here that it follows the protocol
_: type[CallListener] = KeepingListener
