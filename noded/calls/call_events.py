"""The events a call gives the node's masters (noded.master): those its function emits,
and ``call.finish`` when it ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from noded.calls.table import FunctionCall

#: where the daemon's events go: ``emit(type, data, fnc_id, at)`` (``at`` None: now),
#: never blocking
Emit = Callable[[str, Any, str | None, float | None], None]

CALL_FINISH = "call.finish"


def function_event(emit: Emit | None, call: FunctionCall, report: dict[str, Any]) -> None:
    """An event the call's function sent (``noded.emit``), with its fnc_id, at the time
    the function emitted it."""
    if emit is not None:
        emit(report["type"], report["data"], call.fnc_id, report["at"])


def finish_event(emit: Emit | None, call: FunctionCall) -> None:
    """``call.finish``: ``{"fnc_id", "fn_name", "outcome", "duration_s"}``, ``outcome``
    ``"ok"`` or the error's type."""
    if emit is None:
        return
    outcome = call.error["type"] if call.error else "ok"
    data = {"fnc_id": call.fnc_id, "fn_name": call.fn_name, "outcome": outcome,
            "duration_s": round(call.elapsed_s, 6)}  # fmt: skip
    emit(CALL_FINISH, data, call.fnc_id, None)
