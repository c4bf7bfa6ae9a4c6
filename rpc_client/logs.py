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
    logger.log(level, name, exc_info=exc_info, extra={_FIELDS: fields})


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
        parts = [_timestamp(record), record.levelname, record.getMessage()]
        parts += [f"{key}={_text_value(value)}" for key, value in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``{"ts", "level", "event", ...fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": _timestamp(record), "level": record.levelname, "event": record.getMessage()}
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup_logging(log_format: str, log_file: Path | None = None, level: int = logging.INFO) -> None:
    """Log to stderr, or to ``log_file`` (reopened by :func:`reopen_log_files`)."""
    handler: logging.Handler = (
        logging.StreamHandler(sys.stderr) if log_file is None else _ReopenableFileHandler(log_file)
    )
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
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
        self.acquire()
        try:
            self.close()
            self.stream = self._open()
        finally:
            self.release()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return getattr(record, _FIELDS, {})


def _timestamp(record: logging.LogRecord) -> str:
    return f"{_whole_second(int(record.created))}.{int(record.msecs):03d}Z"


@functools.lru_cache(maxsize=4)
def _whole_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _text_value(value: Any) -> str:
    if not isinstance(value, str):
        return orjson.dumps(value, default=str).decode()
    plain = value and not any(char in value for char in ' "=\n')
    return value if plain else orjson.dumps(value).decode()
