"""Structured logs: an event's line is the same whether it is written directly (the
daemon's two events a call) or through logging's handler chain."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rpc_client import logs
from rpc_client.logs import event, setup_logging


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, direct = root.handlers[:], root.level, logs._direct
    yield
    for handler in root.handlers:
        with contextlib.suppress(ValueError):  # a stream a test closed
            handler.close()
    root.handlers[:], root.level, logs._direct = handlers, level, direct


def test_a_direct_json_line_is_what_the_formatter_writes(
    tmp_path: Path, restored_logging: None
) -> None:
    setup_logging("json", tmp_path / "noded.log")
    log = logging.getLogger("noded.test")
    event(log, "call.finish", fnc_id="1:2:3.0:ab", duration_s=0.5, outcome="ok")
    logging.getLogger().handlers[0].setFormatter(logs.JsonFormatter())
    logs._direct = None  # now through logging's chain
    event(log, "call.finish", fnc_id="1:2:3.0:ab", duration_s=0.5, outcome="ok")
    direct, chained = (orjson.loads(line) for line in _lines(tmp_path / "noded.log"))
    assert direct.pop("ts")[-1] == chained.pop("ts")[-1] == "Z"
    fields = {"fnc_id": "1:2:3.0:ab", "duration_s": 0.5, "outcome": "ok"}
    assert direct == chained == {"level": "INFO", "event": "call.finish", **fields}


def test_a_direct_text_line_is_what_the_formatter_writes(
    tmp_path: Path, restored_logging: None
) -> None:
    setup_logging("text", tmp_path / "noded.log")
    log = logging.getLogger("noded.test")
    event(log, "limit.max_functions", logging.WARNING, running=3, why="a b")
    logs._direct = None
    event(log, "limit.max_functions", logging.WARNING, running=3, why="a b")
    direct, chained = (line.split(" ", 1)[1] for line in _lines(tmp_path / "noded.log"))
    assert direct == chained == 'WARNING limit.max_functions running=3 why="a b"'


def test_levels_below_the_threshold_are_not_written(tmp_path: Path, restored_logging: None) -> None:
    setup_logging("json", tmp_path / "noded.log", level=logging.WARNING)
    event(logging.getLogger("noded.test"), "call.start", fnc_id="x")
    assert _lines(tmp_path / "noded.log") == []


def test_an_exception_goes_through_the_formatter(tmp_path: Path, restored_logging: None) -> None:
    setup_logging("json", tmp_path / "noded.log")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        event(logging.getLogger("noded.test"), "http.internal_error", logging.ERROR, exc_info=True)
    (entry,) = (orjson.loads(line) for line in _lines(tmp_path / "noded.log"))
    assert "RuntimeError: boom" in entry["exception"]


def test_a_stream_that_fails_falls_back_to_logging_which_reports_it(
    tmp_path: Path, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging("json", tmp_path / "noded.log")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.stream.close()  # as a write to a full disk fails: the caller goes on
    event(logging.getLogger("noded.test"), "call.start", fnc_id="x")
    assert "--- Logging error ---" in capsys.readouterr().err


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()
