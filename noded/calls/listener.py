"""What a call's process tells, handed to those who keep it (the process layer's
:class:`~noded.process.function.CallListener`, given to the process as it starts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from noded.calls.call_events import Emit, function_event
from noded.calls.output_keeper import OutputKeeper
from noded.calls.table import FunctionCall
from noded.process.outcome import Outcome


@dataclass(frozen=True, slots=True)
class CallHandOn:
    """``call``'s outcome to ``finish`` (the supervisor), its output and progress to
    ``outputs``, its events to the masters (``emit_to()``: where they go now)."""

    call: FunctionCall
    finish: Callable[[FunctionCall, Outcome], None]
    outputs: OutputKeeper
    emit_to: Callable[[], Emit | None]

    def decided(self, outcome: Outcome) -> None:
        self.finish(self.call, outcome)

    def output(self, stream: str, data: bytes) -> None:
        self.outputs.output(self.call, stream, data)

    def progress(self, report: dict[str, Any]) -> None:
        self.outputs.progress(self.call, report)

    def event(self, report: dict[str, Any]) -> None:
        function_event(self.emit_to(), self.call, report)
