"""``@command``'s declarations: the caller's ``node`` is no argument, async is noted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from masterd.commands import Commands, command_spec, load_commands
from rpc_client.errors import InvalidArguments


def allocate(node: str, disk: str, size_gb: int = 10) -> int:
    """Allocate."""
    return size_gb


async def ping(value: Any = None) -> Any:
    return value


def test_node_is_filled_not_an_argument() -> None:
    spec = command_spec(allocate, "allocate")
    assert spec.takes_node and not spec.is_async
    assert spec.schema()["properties"].keys() == {"disk", "size_gb"}
    assert spec.schema()["required"] == ["disk"]
    spec.check_args({"disk": "sdb"})
    with pytest.raises(InvalidArguments, match="'node' is the calling node's name"):
        spec.check_args({"disk": "sdb", "node": "other"})
    assert spec.keywords({"disk": "sdb"}, "n1") == {"disk": "sdb", "node": "n1"}
    assert spec.describe()["doc"] == "Allocate."


def test_a_command_without_node_is_not_given_it() -> None:
    spec = command_spec(ping, "ping")
    assert spec.is_async and not spec.takes_node
    assert spec.keywords({"value": 1}, "n1") == {"value": 1}
    with pytest.raises(InvalidArguments, match="unknown arguments: node"):
        spec.check_args({"node": "n1"})


def test_a_name_taken_twice_is_refused() -> None:
    table = Commands()
    table.add(command_spec(allocate, "same"))
    with pytest.raises(ValueError, match="command name 'same' registered twice"):
        table.add(command_spec(ping, "same"))


def test_a_module_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(
        ValueError,
        match=r"--commands tests\.no_such_module: cannot import "
        r"module 'tests\.no_such_module': not found in .*--commands-path DIR",
    ):
        load_commands(["tests.no_such_module"])


def test_a_module_that_raises_on_import_says_what_it_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_commands adds to it
    (tmp_path / "n1_raising_commands.py").write_text("import no_such_dependency_n1\n")
    with pytest.raises(
        ValueError,
        match=r"--commands n1_raising_commands: "
        r"ModuleNotFoundError: No module named 'no_such_dependency_n1'",
    ):
        load_commands(["n1_raising_commands"], [tmp_path])


def test_commands_are_imported_from_commands_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "n1_path_commands", raising=False)
    (tmp_path / "n1_path_commands.py").write_text("VALUE = 1\n")
    load_commands(["n1_path_commands"], [tmp_path])
    assert sys.modules["n1_path_commands"].VALUE == 1
