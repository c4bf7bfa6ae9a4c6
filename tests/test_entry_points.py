"""The two programs' entry points: a Ctrl-C while they still import is held until the
imports are done, then ends the program quietly with 130 (doc/operations.md)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT

#: a program that sends itself SIGINT at one moment of its entry point's imports
_SIGNALLED_PROGRAM = textwrap.dedent(
    """
    import os, signal, sys

    entry, moment, first_import = sys.argv[1:4]

    class SigintAtAnImport:
        fired = False

        def find_spec(self, name, path=None, target=None):
            initialising = sys.modules.get("orjson.orjson")
            if moment == "start":
                now = name == first_import
            else:  # orjson's own initialisation is running and imports a module
                now = initialising is not None and not hasattr(initialising, "dumps")
            if now and not self.fired:
                self.fired = True
                print(f"SIGINT at the import of {name}", file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGINT)
            return None

    sys.meta_path.insert(0, SigintAtAnImport())
    module = __import__(entry, fromlist=["main"])
    sys.exit(module.main(["--version"]))
    """
)


@pytest.mark.parametrize(
    ("entry", "moment", "first_import"),
    [
        ("noded.entry", "start", "noded.cli"),
        ("masterd.daemon.entry", "start", "masterd.daemon.cli"),
        ("masterd.cli.entry", "start", "masterd.cli.main"),
        # Delivered then, the signal crashed rpc-cli with SIGSEGV (ijl/orjson#310). In
        # the daemon, orjson's initialisation finds its imports done already.
        ("masterd.cli.entry", "orjson", ""),
    ],
)
def test_ctrl_c_during_the_imports_is_held_then_ends_the_program_with_130(
    entry: str, moment: str, first_import: str
) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_PROGRAM, entry, moment, first_import],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert "SIGINT at the import of" in ran.stderr, ran.stderr  # the moment came
    assert ran.returncode == 130, ran.stderr
    assert "Traceback" not in ran.stderr and ran.stdout == ""


@pytest.mark.parametrize(
    ("script", "entry"),
    [
        ("ganeti-noded", "noded.entry:main"),
        ("rpc-cli", "masterd.cli.entry:main"),
        ("ganeti-masterd", "masterd.daemon.entry:main"),
    ],
)
def test_the_installed_commands_start_at_the_entry_points(script: str, entry: str) -> None:
    (found,) = importlib.metadata.entry_points(group="console_scripts", name=script)
    assert found.value == entry


@pytest.mark.parametrize("entry", ["noded.entry", "masterd.daemon.entry", "masterd.cli.entry"])
def test_an_entry_point_imports_nothing_a_ctrl_c_could_interrupt(entry: str) -> None:
    """The three entry points are one (rpc_client.entry.run_main), and importing one
    imports neither orjson nor the program, which are imported with SIGINT held."""
    ran = subprocess.run(
        [sys.executable, "-c", f"import json, sys, {entry}; print(json.dumps([m for m in "
         "sys.modules if m.split('.')[0] in ('orjson', 'noded', 'masterd', 'rpc_client')]))"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    package = entry.split(".")[0]
    allowed = {"rpc_client", "rpc_client.lazy_names", "rpc_client.entry", entry, package,
               entry.rsplit(".", 1)[0]}  # fmt: skip
    if package == "noded":
        allowed.add("noded.version")  # noded's own __version__, a constant
    assert set(json.loads(ran.stdout)) == allowed
