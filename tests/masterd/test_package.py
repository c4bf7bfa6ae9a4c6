"""``masterd``'s public names, imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import masterd
import masterd.follow
import masterd.gather  # submodules named as two public functions, loaded before the names


def test_every_public_name_is_what_its_module_defines() -> None:
    for name in masterd.__all__:
        value = getattr(masterd, name)
        assert value.__name__ == name and value.__module__.startswith("masterd."), name
    assert callable(masterd.follow) and callable(masterd.gather)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        masterd.no_such_name  # noqa: B018


def test_rpc_cli_entry_point_imports_nothing_heavy_before_its_guard() -> None:
    heavy = "{'asyncio', 'masterd.call', 'orjson', 'rpc_client.protocol'}"
    probe = f"import sys, masterd.cli.entry; print(sorted(set(sys.modules) & {heavy}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
