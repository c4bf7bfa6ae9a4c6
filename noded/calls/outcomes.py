"""Turn what a function process did into the call's ``(result, error)``."""

from __future__ import annotations

import signal
from typing import Any

from noded.process.child.frames import InvalidFrame, decode_frame
from noded.process.function import Outcome
from rpc_client import protocol

_PREVIEW_BYTES = 200


def call_result(
    outcome: Outcome, abort_reason: str | None, max_frame_bytes: int
) -> tuple[Any, dict[str, Any] | None]:
    """The result and error of a call, per the contract's table of failure types."""
    if outcome.frame is not None:
        try:
            return decode_frame(outcome.frame)
        except InvalidFrame as exc:
            return None, invalid_result(outcome, str(exc), outcome.frame)
    if outcome.limit_exceeded is not None:  # its whole tree's: killed at the limit
        limit, what = outcome.limit_exceeded
        return None, _error(
            outcome, protocol.RESOURCE_LIMIT_EXCEEDED, f"stopped by {what}", limit=limit
        )
    if abort_reason is not None:
        return None, aborted(outcome, abort_reason)
    if outcome.frame_too_large:
        return None, _error(
            outcome,
            protocol.RESULT_TOO_LARGE,
            f"result frame is over the limit of {max_frame_bytes} bytes; the process was killed",
            limit_bytes=max_frame_bytes,
        )
    if outcome.signal == signal.SIGXCPU:  # only a CPU time limit sends it
        return None, _error(
            outcome,
            protocol.RESOURCE_LIMIT_EXCEEDED,
            "function process was stopped by its CPU time limit (SIGXCPU)",
            limit="cpu",
        )
    if outcome.partial_frame:
        return None, invalid_result(outcome, "no newline-terminated frame", outcome.partial_frame)
    return None, _error(
        outcome, protocol.FUNCTION_PROCESS_DIED, f"{_how_it_ended(outcome)} without a result"
    )


def unwritable_result(why: str) -> dict[str, Any]:
    """The error of a call whose result was read but cannot be written as JSON again (say,
    nested deeper than the 254 levels orjson writes)."""
    return {
        "type": protocol.INVALID_RESULT,
        "message": f"the function's result cannot be written as JSON ({why})",
        "traceback": None,
    }


def aborted(outcome: Outcome, reason: str) -> dict[str, Any]:
    words = {
        "abort_after": "its abort_after deadline passed",
        "aborted": "AbortFunction was called",
        "shutdown": "the daemon shut down",
    }
    return _error(
        outcome,
        protocol.FUNCTION_ABORTED,
        f"function was killed because {words.get(reason, reason)}",
        reason=reason,
    )


def invalid_result(outcome: Outcome, why: str, written: bytes) -> dict[str, Any]:
    preview = written[:_PREVIEW_BYTES].decode("utf-8", "replace")
    return _error(
        outcome,
        protocol.INVALID_RESULT,
        f"function process wrote an invalid result frame ({why}): {preview!r}",
    )


def _error(outcome: Outcome, type_: str, message: str, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message, "traceback": None, **extra}
    if outcome.exit_code is not None:
        error["exit_code"] = outcome.exit_code
    if outcome.signal is not None:
        error["signal"] = outcome.signal
    error["stderr"] = outcome.stderr_tail.decode("utf-8", "replace")
    return error


def _how_it_ended(outcome: Outcome) -> str:
    if outcome.signal is not None:
        name = _signal_name(outcome.signal)
        return f"function process was killed by signal {outcome.signal} ({name})"
    if outcome.exit_code is not None:
        return f"function process exited with status {outcome.exit_code}"
    return "function process closed its output"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"
