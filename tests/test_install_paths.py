"""``make install``'s paths, checked without an install (tests/test_install.py runs one):
a path with a space stays one shell word in every recipe and one systemd word in the
units; a path holding what the sed rewrite or the shell quoting cannot carry is refused
in one line before anything is written.  (A space in PREFIX made two stray virtualenvs,
one inside the source tree, and the install failed.)"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"PYTHON={sys.executable}", "NODE_NAME=n1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def spaced(tmp_path: Path) -> dict[str, Path]:
    return {name: tmp_path / f"my {name.lower()}"
            for name in ("PREFIX", "UNIT_DIR", "CONFIG_DIR", "BINDIR", "STATE_DIR")}  # fmt: skip


def test_every_install_command_keeps_a_spaced_path_one_word(tmp_path: Path) -> None:
    places = spaced(tmp_path)
    dry = make("-n", "install", *(f"{name}={path}" for name, path in places.items()))
    assert dry.returncode == 0, dry.stderr
    assert not any(path.exists() for path in places.values())  # -n wrote nothing
    script = dry.stdout.replace("\\\n", " ")
    words = [word for line in script.splitlines() for word in shlex.split(line, comments=False)]
    for path in places.values():
        assert any(str(path) in word for word in words), path  # it is used, whole
    # each word naming a place names it whole: none is its first half alone (`.../my`),
    # and no word is its second half (`prefix/bin/python`, a path in the source tree)
    wholes = tuple(str(path) for path in places.values())
    named = [word for word in words if str(tmp_path) in word]
    assert named and all(
        word.split(str(tmp_path))[1].startswith(
            tuple(whole.removeprefix(str(tmp_path)) for whole in wholes)
        )
        for word in named
    ), named
    assert not [word for word in words if word.split("/")[0] in ("prefix", "unit_dir", "bindir")]


def test_the_units_quote_a_spaced_path_as_systemd_reads_it(tmp_path: Path) -> None:
    places = spaced(tmp_path)
    done = make("install-units", *(f"{name}={path}" for name, path in places.items()))
    assert done.returncode == 0, done.stderr
    unit = (places["UNIT_DIR"] / "ganeti-noded.service").read_text().splitlines()
    exec_start = next(line for line in unit if line.startswith("ExecStart="))
    assert shlex.split(exec_start.removeprefix("ExecStart=")) == [
        str(places["PREFIX"] / "bin" / "ganeti-noded"),
        "--config", str(places["CONFIG_DIR"] / "noded.toml"),
        "--state-dir", str(places["STATE_DIR"] / "ganeti-noded"),
    ]  # fmt: skip
    assert "Documentation=file://" + str(places["PREFIX"]).replace(" ", "%%20") in "\n".join(unit)
    masterd = (places["UNIT_DIR"] / "ganeti-masterd.service").read_text()
    assert f'ReadWritePaths="{places["STATE_DIR"] / "ganeti-masterd"}"' in masterd


@pytest.mark.parametrize(
    ("name", "bad", "said"),
    [("PREFIX", "a|b", "|"), ("CONFIG_DIR", "a&b", "&"), ("UNIT_DIR", "a#b", "#"),
     ("BINDIR", "a\nb", "a newline"), ("STATE_DIR", "it's", "'"), ("PREFIX", "a\\b", "\\"),
     ("PREFIX", 'a"b', '"'), ("PREFIX", "a$x", "$")],
)  # fmt: skip
@pytest.mark.parametrize("target", ["install", "install-certs", "install-units"])
def test_a_path_the_install_cannot_carry_is_refused_in_one_line(
    tmp_path: Path, name: str, bad: str, said: str, target: str
) -> None:
    # every place in tmp_path: were the refusal to fail, nothing outside it is touched
    places = {key: str(path) for key, path in spaced(tmp_path).items()}
    places[name] = str(tmp_path / bad)
    done = make(target, *(f"{key}={path}" for key, path in places.items()))
    assert done.returncode == 2 and done.stdout == ""  # refused before any command ran
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert f"{name} may not hold {said} " in done.stderr and "choose another path" in done.stderr
    assert list(tmp_path.iterdir()) == []
