"""The checks of a call state answer (:meth:`rpc_client.protocol.CallState.from_wire`):
each field of the type, shape and range the contract allows, and a bounded way to show a
value in an error message."""

from __future__ import annotations

import math
from typing import Any, Final

__all__ = ["BAD_OUTPUT", "checked_error", "checked_output_next", "checked_progress",
           "is_output", "shown"]  # fmt: skip


def shown(value: Any, limit: int = 60) -> str:
    """A request's value in an error message: strings and numbers bounded, others by type.

    Never ``repr`` of a whole JSON value: it may be megabytes, or nested too deep to print.
    """
    if isinstance(value, str):
        text = repr(value[:limit])
        return text + "..." if len(value) > limit else text
    if value is None or isinstance(value, bool | int | float):
        return repr(value)[:limit]
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


BAD_OUTPUT: Final = (
    "call state output is not an object with from, next, skipped (integers >= 0) and "
    "events (objects with a string stream)"
)


def checked_error(error: Any) -> dict[str, Any] | None:
    """A call state's ``error``: null, or ``{"type": str, "message": str, "traceback":
    str|null, ...}``."""
    if error is None:
        return None
    if not isinstance(error, dict):
        raise ValueError(f"call state error is {shown(error)}, neither null nor an object")
    for key in ("type", "message"):
        if not isinstance(error.get(key), str):
            raise ValueError(f"call state error.{key} {shown(error.get(key))} is not a string")
    if not isinstance(error.get("traceback"), str | None):
        raise ValueError("call state error.traceback is neither null nor a string")
    return error


def checked_progress(progress: Any) -> dict[str, Any] | None:
    """A call state's ``progress``: null, or ``{"fraction": number in 0..1 | null,
    "message": str, "at": number}``."""
    if progress is None:
        return None
    if not isinstance(progress, dict):
        raise ValueError(f"call state progress is {shown(progress)}, neither null nor an object")
    fraction, message, at = progress.get("fraction"), progress.get("message"), progress.get("at")
    if fraction is not None and not (_is_number(fraction) and 0 <= fraction <= 1):
        raise ValueError(f"call state progress.fraction {shown(fraction)} is not null or 0..1")
    if not isinstance(message, str):
        raise ValueError(f"call state progress.message {shown(message)} is not a string")
    if not _is_number(at):
        raise ValueError(f"call state progress.at {shown(at)} is not a number")
    return progress


def checked_output_next(value: Any) -> int:
    if not _is_position(value):
        raise ValueError(f"call state output_next {shown(value)} is not an integer >= 0")
    return int(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_position(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_output(output: Any) -> bool:
    return (
        isinstance(output, dict)
        and all(_is_position(output.get(key)) for key in ("from", "next", "skipped"))
        and isinstance(output.get("events"), list)
        and all(_is_output_event(event) for event in output["events"])
    )


def _is_output_event(event: Any) -> bool:
    """An output event: a string ``stream`` (one this client does not know is skipped by
    its reader), a string ``text`` and a number-or-null ``fraction`` where present."""
    return (
        isinstance(event, dict)
        and isinstance(event.get("stream"), str)
        and isinstance(event.get("text", ""), str)
        and (event.get("fraction") is None or _is_number(event["fraction"]))
    )
