"""What a function process produced, the bounds it is read under, and what hears of it
(see :mod:`noded.process.function`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ProcessLimits:
    """Per-process bounds."""

    max_frame_bytes: int = 64 * 1024 * 1024
    stderr_tail_bytes: int = 64 * 1024
    kill_grace_s: float = 5.0


@dataclass
class Outcome:
    """What a function process produced by the time its result was decided."""

    frame: bytes | None = None
    #: what the frame channel held without a frame's newline
    partial_frame: bytes = b""
    frame_too_large: bool = False
    exit_code: int | None = None
    signal: int | None = None
    stderr_tail: bytes = b""
    #: ``(limit, what)`` when the daemon or the kernel stopped the call at a limit of its
    #: whole tree (noded.process.bounds): ``("memory", "the call's memory limit of 200 MiB")``
    limit_exceeded: tuple[str, str] | None = None


class CallListener(Protocol):
    """What a started process tells its call, each as soon as it happens."""

    def decided(self, outcome: Outcome) -> None:
        """Its outcome is decided (before ``FunctionProcess.decided`` is set)."""

    def output(self, stream: str, data: bytes) -> None:
        """It wrote ``data`` on ``stream`` ("stdout" or "stderr")."""

    def progress(self, report: dict[str, Any]) -> None:
        """It reported progress (fraction, message, at)."""

    def event(self, report: dict[str, Any]) -> None:
        """It emitted an event ({"type", "data", "at"}: noded.emit)."""
