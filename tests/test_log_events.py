"""Every event name the code logs is in doc/operations.md's "Logs" section, so that an
operator who greps the journal for one finds what it means there (issue 33 item 8)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("noded", "masterd", "rpc_client")
#: helpers that log the event named by their first argument (noded.master.reporter)
NAMING_HELPERS = {"_failed"}
_NAME = re.compile(r"[a-z]+(\.[a-z_]+)+")


def logged_events() -> dict[str, str]:
    """Event name -> the first file that logs it: ``event(log, "name", ...)`` and the
    helpers that pass their first argument to it."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for call in ast.walk(ast.parse(path.read_text())):
                name = _event_name(call)
                if name is not None:
                    found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def _event_name(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    position = 1 if called == "event" else 0 if called in NAMING_HELPERS else None
    if position is None or len(node.args) <= position:
        return None
    arg = node.args[position]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value if _NAME.fullmatch(arg.value) else None
    return None


def logs_section() -> str:
    text = (ROOT / "doc" / "operations.md").read_text()
    return text.split("\n## Logs\n", 1)[1].split("\n## ", 1)[0]


def test_the_scan_finds_the_events_it_should() -> None:
    events = logged_events()
    # one through event(), one through the reporter's helper, one from ganeti-masterd
    assert {"call.start", "master.heartbeat_failed", "job.submitted"} <= set(events)
    assert len(events) > 80


def test_every_logged_event_is_in_the_operations_logs_section() -> None:
    section = logs_section()
    missing = {name: where for name, where in logged_events().items() if f"`{name}`" not in section}
    assert not missing, f"logged but not in doc/operations.md's Logs section: {missing}"
