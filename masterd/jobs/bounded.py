"""A node's error as a job stores it: bounded by ``--max-job-result-bytes`` as a result is.

An ``ok`` result over the limit is left on the node (``ResultTooLarge``); an error cannot
be left out (it says why the node failed), so one over the limit is cut: the head of its
``message`` and the two ends of its ``traceback`` (the first frames, and the raise with
its line) are kept, the rest of its fields dropped, with ``truncated: true``, the whole
error's ``size`` and where to read it (the node's call, by its fnc_id, while the node
keeps it).  The stored error's JSON is then at most the limit plus :data:`SLACK_BYTES`.
"""

from __future__ import annotations

from typing import Any

from rpc_client.protocol import dumps

#: what a cut error may take beyond the limit: its type, marker and sizes
SLACK_BYTES = 512
_TYPE_CHARS = 200


def bounded_error(error: dict[str, Any], fnc_id: str | None, max_bytes: int) -> dict[str, Any]:
    """``error`` if its JSON is at most ``max_bytes``, else a cut copy (module doc)."""
    size = len(dumps(error))
    if size <= max_bytes:
        return error
    where = f"WaitForFunction {fnc_id} on the node" if fnc_id else "the node's log"
    marker = (f" [cut: the error is {size} bytes, over --max-job-result-bytes={max_bytes}; "
              f"the whole of it: {where}]")  # fmt: skip
    message, traceback = str(error.get("message", "")), error.get("traceback")
    keep = max_bytes // 2
    while True:  # characters, not bytes: halve until the JSON fits
        cut: dict[str, Any] = {
            "type": str(error.get("type", "Error"))[:_TYPE_CHARS],
            "message": message[:keep] + marker, "truncated": True, "size": size,
        }  # fmt: skip
        if isinstance(traceback, str):
            cut["traceback"] = _ends(traceback, keep)
        if len(dumps(cut)) <= max_bytes + SLACK_BYTES or keep == 0:
            return cut
        keep //= 2


def _ends(text: str, keep: int) -> str:
    """The first and last ``keep // 2`` characters of ``text``, marked where cut."""
    half = keep // 2
    if len(text) <= 2 * half:
        return text
    tail = text[-half:] if half else ""
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{tail}"
