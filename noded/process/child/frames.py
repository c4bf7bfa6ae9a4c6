"""The contract between the daemon and a function process.

stdin: the call's mark (:func:`call_mark`, or nothing if the daemon could not read the
process's start time) and a newline, one JSON object ``{"fn_name": ..., "fn_args": {...}}``,
a newline, then EOF.
fd 3, the *frame channel*: progress lines ``{"progress": {"fraction", "message", "at"}}``
and event lines ``{"event": {"type", "data", "at"}}`` (``noded.emit``), then one result
frame, a JSON object ending in a newline: ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": {"type", "message", ...}}``.
stdout and stderr: the call's output, whatever the function and its children write.
The daemon reads the frame at its newline, not at EOF, so a function that leaves a
child holding the channel open does not delay its answer.
"""

from __future__ import annotations

import os
import time
import traceback
from typing import Any

import orjson

FRAME_END = b"\n"
#: the frame channel's descriptor in a function process
FRAME_FD = 3
#: set in a function process's environment before the function runs, and so inherited
#: by everything it starts (noded.process.tree finds them by it): its call_mark()
CALL_MARK = "NODED_CALL"


def call_mark(pid: int, start_ticks: int | str) -> str:
    """The mark of the call led by process ``pid`` that started at ``start_ticks`` (field
    22 of /proc/PID/stat): unique on this boot, unlike a pid alone."""
    return f"{pid}:{start_ticks}"


def mark_of(pid: int, birth: str) -> str:
    """The mark of the call led by ``pid`` of process birth ``birth`` ("boot:ticks")."""
    return call_mark(pid, birth.rsplit(":", 1)[1])


def mark_line(pid: int, birth: str | None) -> bytes:
    """The line that comes before a call's request: the mark of the call led by ``pid``,
    from its birth as the daemon read it.  Empty without one: the process then reads its
    own start time."""
    if birth is None:
        return FRAME_END
    return mark_of(pid, birth).encode() + FRAME_END


def start_ticks(pid: int | str = "self") -> int:
    """A process's start time in clock ticks since boot, from /proc/PID/stat: one small
    read, no file object (a function process pays pages for one, and the daemon reads it
    for every call).  Raises ``OSError`` if the process is gone, ``ValueError`` if the
    line is not what Linux writes."""
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        line = os.read(fd, 4096)
    finally:
        os.close(fd)
    # "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after
    # its last ')'; the start time is field 22 of the line, the 20th after comm.
    fields = line[line.rfind(b")") + 2 :].split(maxsplit=20)
    if len(fields) < 20:
        raise ValueError(f"/proc/{pid}/stat has no start time")
    return int(fields[19])


class InvalidFrame(ValueError):
    """Raised when what a function process wrote is not a result frame."""


def encode_request(
    fn_name: str, fn_args: dict[str, Any], limits: dict[str, Any] | None = None
) -> bytes:
    """The process's stdin; canonical (sorted keys), so equal calls encode equally.

    It ends in a newline (JSON text never holds a raw one), so the process has its call
    as soon as that arrives, without waiting for EOF.

    Raises ``orjson.JSONEncodeError`` for values orjson cannot write (nested more than
    254 levels deep, though it reads up to 1024).
    """
    request: dict[str, Any] = {"fn_name": fn_name, "fn_args": fn_args}
    if limits:
        request["limits"] = limits
    return orjson.dumps(request, option=orjson.OPT_SORT_KEYS) + FRAME_END


def decode_request(data: bytes) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(fn_name, fn_args, limits)`` of a call's request."""
    request = orjson.loads(data)
    return request["fn_name"], request["fn_args"], request.get("limits") or {}


def encode_result(result: Any) -> bytes:
    """The frame of a successful call; raises ``TypeError`` if result is not JSON."""
    return orjson.dumps({"ok": True, "result": result}) + FRAME_END


def encode_exception(exc: BaseException, error: dict[str, Any] | None = None) -> bytes:
    """The frame of a call whose function raised ``exc`` (described by ``error`` when the
    runner knows better, as for a resource limit)."""
    error = {
        "type": type(exc).__name__,
        "message": str(exc),
        **(error or {}),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    if isinstance(exc, OSError) and exc.errno is not None:
        error.setdefault("errno", exc.errno)
    return orjson.dumps({"ok": False, "error": error}) + FRAME_END


def encode_progress(fraction: float | None, message: str) -> bytes:
    """A progress line of the frame channel, stamped now."""
    report = {"fraction": fraction, "message": message, "at": time.time()}
    return orjson.dumps({"progress": report}) + FRAME_END


def decode_progress(line: bytes) -> dict[str, Any] | None:
    """The report of a progress line (``fraction``, ``message``, ``at``), or None if the
    line is not one (then it is the result frame)."""
    if not line.startswith(b'{"progress"'):
        return None
    try:
        report = orjson.loads(line).get("progress")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(report, dict):
        return None
    fraction, at = report.get("fraction"), report.get("at")
    number = (int, float)
    if isinstance(fraction, bool) or not (isinstance(fraction, number) and 0 <= fraction <= 1):
        fraction = None
    return {
        "fraction": fraction,
        "message": str(report.get("message", ""))[:1000],
        "at": at if isinstance(at, number) and not isinstance(at, bool) else time.time(),
    }


#: how an event line starts (``{"event": {"type", "data", "at"}}``, from ``noded.emit``)
EVENT_PREFIX = b'{"event"'


def encode_event(kind: str, data: Any) -> bytes:
    """An event line of the frame channel, stamped now; raises ``TypeError`` if ``data``
    is not JSON."""
    return orjson.dumps({"event": {"type": kind, "data": data, "at": time.time()}}) + FRAME_END


def decode_event(line: bytes) -> dict[str, Any] | None:
    """The ``{"type", "data", "at"}`` of an event line, or None if it is not one."""
    try:
        report = orjson.loads(line).get("event")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(report, dict) or not isinstance(report.get("type"), str):
        return None
    at = report.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        at = time.time()
    return {"type": report["type"], "data": report.get("data"), "at": at}


def decode_frame(line: bytes) -> tuple[Any, dict[str, Any] | None]:
    """``(result, error)`` from one frame line; raises :class:`InvalidFrame`."""
    try:
        frame = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidFrame(f"not JSON: {exc}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("ok"), bool):
        raise InvalidFrame("not an object with a boolean 'ok'")
    if frame["ok"]:
        if "result" not in frame:
            raise InvalidFrame("'ok' frame without 'result'")
        return frame["result"], None
    error = frame.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("type"), str):
        raise InvalidFrame("failed frame without an error object with a string 'type'")
    error.setdefault("message", "")
    error.setdefault("traceback", None)
    return None, error
