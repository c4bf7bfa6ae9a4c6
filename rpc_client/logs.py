"""Structured logs: one line per event on stderr, as ``key=value`` text or JSON."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson

_FIELDS = "fields"


def event(
    logger: logging.Logger,
    name: str,
    level: int = logging.INFO,
    *,
    exc_info: bool = False,
    **fields: Any,
) -> None:
    """Log one event with its fields (fnc_id, fn_name, ...)."""
    if not logger.isEnabledFor(level):
        return
    if _direct is None or exc_info or not _direct.write(level, name, fields):
        logger.log(level, name, exc_info=exc_info, extra={_FIELDS: fields})


class _DirectWriter:
    """Writes an event's line straight to the handler :func:`setup_logging` installed,
    as its formatter would: a daemon logs two events a call, and logging's record,
    filter and handler chain cost more than the line itself."""

    def __init__(self, handler: logging.StreamHandler[Any], json_lines: bool) -> None:
        self._handler = handler
        self._line = _json_line if json_lines else _text_line

    def write(self, level: int, name: str, fields: dict[str, Any]) -> bool:
        """False if the line could not be written (logging's own path then reports it)."""
        line = self._line(_timestamp_of(time.time()), logging.getLevelName(level), name, fields)
        handler = self._handler
        handler.acquire()
        try:
            stream = handler.stream
            stream.write(line + handler.terminator)
            stream.flush()
            return True
        except (OSError, ValueError, AttributeError):  # full disk, closed or no stream
            return False
        finally:
            handler.release()


_direct: _DirectWriter | None = None


class RateLimit:
    """At most one log line per ``every_s``; :attr:`suppressed` counts the lines left out
    since the last one (a client that floods us must not flood the log)."""

    def __init__(self, every_s: float) -> None:
        self._every_s = every_s
        self._last = -every_s
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._every_s:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def take_suppressed(self) -> int:
        """How many were left out since the last line, counting afresh from now."""
        suppressed, self.suppressed = self.suppressed, 0
        return suppressed


class TextFormatter(logging.Formatter):
    """``2026-11-22T10:00:00.123Z INFO call.finished fnc_id=... outcome=ok``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        ts = _timestamp_of(record.created)
        line = _text_line(ts, record.levelname, record.getMessage(), fields)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``{"ts", "level", "event", ...fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        if record.exc_info:
            fields = {**fields, "exception": self.formatException(record.exc_info)}
        ts = _timestamp_of(record.created)
        return _json_line(ts, record.levelname, record.getMessage(), fields)


def _text_line(ts: str, level: str, name: str, fields: dict[str, Any]) -> str:
    parts = [ts, level, name]
    parts += [f"{key}={_text_value(value)}" for key, value in fields.items()]
    return " ".join(parts)


def _json_line(ts: str, level: str, name: str, fields: dict[str, Any]) -> str:
    entry = {"ts": ts, "level": level, "event": name}
    entry.update(fields)
    return orjson.dumps(entry, default=str).decode()


def setup_logging(log_format: str, log_file: Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr, or to ``log_file`` (reopened by :func:`reopen_log_files`)."""
    handler: logging.StreamHandler[Any] = (
        logging.StreamHandler(sys.stderr) if log_file is None else _ReopenableFileHandler(log_file)
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    global _direct
    _direct = _DirectWriter(handler, json_lines=log_format == "json")
    # What the logging HOWTO's "Optimization" section suggests for records that carry
    # none of these: a call logs two events, and finding the caller's frame was the most
    # expensive part of each.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def reopen_log_files() -> None:
    """Reopen the log file (after logrotate moved it): what SIGHUP does."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _ReopenableFileHandler):
            handler.reopen()


class _ReopenableFileHandler(logging.FileHandler):
    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=False)

    def reopen(self) -> None:
        """Open the file at its path again; if it cannot be, this raises and the file in
        use stays (closed first, a failed open lost every later line)."""
        stream = self._open()
        self.acquire()
        try:
            old, self.stream = self.stream, stream
        finally:
            self.release()
        if old is not None:
            old.close()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, _FIELDS, {})


def _timestamp_of(created: float) -> str:
    whole = int(created)
    return f"{_whole_second(whole)}.{int((created - whole) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _whole_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _text_value(value: Any) -> str:
    if not isinstance(value, str):
        return orjson.dumps(value, default=str).decode()
    plain = value and not any(char in value for char in ' "=\n')
    return value if plain else orjson.dumps(value).decode()
