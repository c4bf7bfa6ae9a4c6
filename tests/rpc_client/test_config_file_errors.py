"""A config file (``--config``) with a value of the wrong kind, or that is not UTF-8, is
one start error naming the file, the key and what it expected, in both daemons; a TLS
file that is a directory says so.  (They were Python's words: ``expected str, bytes or
os.PathLike object, not int``, ``'int' object is not iterable``, a codec error naming no
file, ``no such file`` for a directory.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from masterd.daemon.cli import parse_config as masterd_config
from noded.cli import parse_config as noded_config
from tests.helpers import run_noded

NODED_WRONG = [
    ("tls-cert = 5", "tls-cert = 5: expected a path (a non-empty string)"),
    ('tls-key = ""', "tls-key = '': expected a path (a non-empty string)"),
    ("functions = 7", "functions = 7: expected a list of strings (or one comma-separated"),
    ("functions = [1, 2]", "functions = [1, 2]: expected a list of strings"),
    ("port = 1e3", "port = 1000.0: expected an integer"),
    ('port = "80"', "port = '80': expected an integer"),
    ("insecure = 1", "insecure = 1: expected true or false"),
    ('spawn = "thread"', "spawn = 'thread': expected one of 'fork', 'exec'"),
    ("bind = 127", "bind = 127: expected a string"),
    ('max-wait = "10"', "max-wait = '10': expected a number"),
    ("functions-path = [3]", "functions-path = [3]: expected a list of paths"),
]  # fmt: skip
MASTERD_WRONG = [
    ("tls-cert = 5", "tls-cert = 5: expected a path (a non-empty string)"),
    ("commands = 7", "commands = 7: expected a list of strings (or one comma-separated"),
    ("port = 1.5", "port = 1.5: expected an integer"),
    ("store = false", "store = False: expected a string"),
]  # fmt: skip


def refused(
    parse: Callable[[list[str]], Any], config: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(["--config", str(config)])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines  # the error and a hint
    return lines[0]


@pytest.mark.parametrize(
    ("daemon", "setting", "said"),
    [("noded", *case) for case in NODED_WRONG] + [("masterd", *case) for case in MASTERD_WRONG],
)
def test_each_daemon_names_the_file_the_key_and_what_it_expected(
    daemon: str, setting: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / f"{daemon}.toml"
    config.write_text(setting + "\n")
    main = noded_config if daemon == "noded" else masterd_config
    assert f"ganeti-{daemon}: error: {config}: {said}" in refused(main, config, capsys)


def test_the_right_kinds_are_still_taken(tmp_path: Path) -> None:
    config = tmp_path / "noded.toml"
    config.write_text('functions = ["a", "b"]\nlabels = "x,y"\nport = 1234\nmax-wait = 3\n'
                      'insecure = true\nspawn = "exec"\nfunctions-path = ["/p"]\n')  # fmt: skip
    _, parsed = noded_config(["--config", str(config)])
    assert (parsed.functions, parsed.labels, parsed.port) == (("a", "b"), ("x", "y"), 1234)
    assert (parsed.max_wait_s, parsed.insecure, parsed.spawn) == (3, True, "exec")
    assert parsed.functions_path == (Path("/p"),)


@pytest.mark.parametrize(("module", "prog"), [("noded", "ganeti-noded"),
                                              ("masterd.daemon", "ganeti-masterd")])  # fmt: skip
def test_a_config_not_utf8_is_named_by_both_daemons(module: str, prog: str, tmp_path: Path) -> None:
    config = tmp_path / "daemon.toml"
    config.write_bytes(b"port = 1\n# caf\xe9\n")
    done = run_noded("--state-dir", str(tmp_path / "s"), "--port", "0", "--config", str(config),
                     module=module, timeout_s=30)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == (
        f"{prog}: error: cannot read config file {config}: not UTF-8 text (byte 0xe9 at offset 14)"
    )


@pytest.mark.parametrize(("parse", "prog"), [(noded_config, "ganeti-noded"),
                                             (masterd_config, "ganeti-masterd")])  # fmt: skip
def test_a_tls_file_that_is_a_directory_says_so(
    parse: Callable[[list[str]], Any], prog: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    main = __import__(parse.__module__, fromlist=["main"]).main
    with pytest.raises(SystemExit) as exited:
        main(["--state-dir", str(tmp_path / "s"), "--tls-cert", str(tmp_path), "--tls-key",
              str(tmp_path / "k"), "--tls-ca", str(tmp_path / "c")])  # fmt: skip
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"{prog}: error: --tls-cert {tmp_path}: a directory, not a file" in err


@pytest.mark.parametrize(("parse", "prog"), [(noded_config, "ganeti-noded"),
                                             (masterd_config, "ganeti-masterd")])  # fmt: skip
def test_an_empty_path_flag_is_refused_as_empty(
    parse: Callable[[list[str]], Any], prog: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--tls-key", ""])  # it said `--tls-key .: no such file`
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"{prog}: error: argument --tls-key: give a path, not an empty string" in err
