"""``masterd``'s public names, imported on first use."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import types

import pytest

import masterd
import masterd.fanout
import masterd.follow_output  # the modules of follow and gather, loaded before the names


def test_every_public_name_is_what_its_module_defines() -> None:
    for name in masterd.__all__:
        value = getattr(masterd, name)
        assert value.__name__ == name and value.__module__.startswith("masterd."), name
    assert callable(masterd.follow) and callable(masterd.gather)


def test_no_submodule_is_named_as_a_public_name() -> None:
    """Importing a submodule binds it to the package under its name: one named as a
    public function (follow, gather) would shadow that function, which is why the
    package's class was once swapped to refuse the binding."""
    submodules = {module.name for module in pkgutil.iter_modules(masterd.__path__)}
    assert submodules & set(masterd.__all__) == set()
    assert type(masterd) is types.ModuleType


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        masterd.no_such_name  # noqa: B018


def test_rpc_cli_entry_point_imports_nothing_heavy_before_its_guard() -> None:
    heavy = "{'asyncio', 'masterd.call', 'orjson', 'rpc_client.protocol'}"
    probe = f"import sys, masterd.cli.entry; print(sorted(set(sys.modules) & {heavy}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
