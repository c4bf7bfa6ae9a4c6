"""Functions that use ``emit`` and ``call_master`` (loaded with tests.functions)."""

from __future__ import annotations

from typing import Any

from noded import call_master, emit, function


@function
def emit_events(count: int, kind: str = "test.event") -> int:
    for n in range(count):
        emit(kind, {"n": n})
    return count


@function
def ask_master(
    command: str, args: dict[str, Any] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """call_master's result, or what it raised: its class, message, and the command's
    error type and traceback if it carries them."""
    try:
        return {"result": call_master(command, args, timeout=timeout)}
    except Exception as exc:
        return {
            "raised": type(exc).__name__,
            "message": str(exc),
            "type": getattr(exc, "type", None),
            "traceback": getattr(exc, "traceback", None),
        }


@function
def emit_big(count: int, kib: int = 250) -> int:
    """``count`` events of ``kib`` KiB each (the largest emit() takes is 256 KiB)."""
    for n in range(count):
        emit("disk.report", {"blob": "x" * (kib * 1024), "n": n})
    return count
