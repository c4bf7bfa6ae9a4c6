"""A daemon that cannot start says what is wrong in one line and at most one hint line,
not argparse's usage block (under systemd that block lands in the journal at every failed
start); usage errors exit 2."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from masterd.daemon import cli as masterd_cli
from noded import cli as noded_cli
from rpc_client import certs, tls
from tests.helpers import run_noded

MISSING = "/no/such/dir/x.pem"
TLS = ["--tls-cert", MISSING, "--tls-key", "/no/such/k", "--tls-ca", "/no/such/ca"]

NODED_CASES = [
    (TLS, f"--tls-cert {MISSING}: no such file"),
    (["--bind", "0.0.0.0"], "refusing to listen on 0.0.0.0 without TLS"),
    ([*TLS, "--policy", "/p.toml", "--tls-allowed-clients", "m1"],
     "give --policy or --tls-allowed-clients, not both"),
    (["--policy", "/no/such/policy.toml"], "--policy /no/such/policy.toml: no such file"),
    (["--tls-cert", MISSING], "TLS needs all three of --tls-cert, --tls-key and --tls-ca"),
    (["--port", "abc"], "argument --port: invalid int value: 'abc'"),
    (["--max-functions", "0"], "max_functions must be > 0"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--config", "/no/such/noded.toml"], "cannot read config file /no/such/noded.toml"),
]  # fmt: skip

MASTERD_CASES = [
    (TLS, f"--tls-cert {MISSING}: no such file"),
    (["--bind", "0.0.0.0"], "refusing to listen on 0.0.0.0 without TLS"),
    (["--nodes", "/no/such/nodes.toml"], "--nodes /no/such/nodes.toml: no such file"),
    (["--store", "sqlite:///relative.db"], "four slashes"),
    (["--heartbeat-s", "nan"], "argument --heartbeat-s: 'nan': give a finite number"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--heartbeat", "5"], "unrecognized arguments: --heartbeat"),
    (["--config", "/no/such/masterd.toml"], "cannot read config file /no/such/masterd.toml"),
]


def refused(
    main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """The lines ``main(argv)`` wrote on stderr, having checked it exited 2."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()


def check_one_line(prog: str, lines: list[str], says: str) -> None:
    assert len(lines) == 2, lines  # what is wrong, and one hint
    assert lines[0].startswith(f"{prog}: error: ") and says in lines[0], lines
    assert lines[1].startswith(f"{prog}: ") and "usage:" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("daemon", "argv", "says"),
    [("noded", *case) for case in NODED_CASES] + [("masterd", *case) for case in MASTERD_CASES],
)
def test_each_daemons_start_errors_are_one_line(
    daemon: str, argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = noded_cli.main if daemon == "noded" else masterd_cli.main
    lines = refused(main, [*argv, "--state-dir", str(tmp_path)], capsys)
    check_one_line(f"ganeti-{daemon}", lines, says)


def test_the_refusal_to_listen_without_tls_hints_at_the_way_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for main in (noded_cli.main, masterd_cli.main):
        lines = refused(main, ["--bind", "0.0.0.0"], capsys)
        assert "--tls-cert" in lines[1] and "--insecure" in lines[1]


@pytest.mark.parametrize(
    ("module", "prog"), [("noded", "ganeti-noded"), ("masterd.daemon", "ganeti-masterd")]
)
def test_a_real_daemon_that_cannot_start_writes_two_lines(module: str, prog: str) -> None:
    done = run_noded(*TLS, module=module)
    assert done.returncode == 2
    check_one_line(prog, done.stderr.splitlines(), f"--tls-cert {MISSING}: no such file")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, two node certificates, and a file that is no PEM at all."""
    directory = tmp_path_factory.mktemp("pki")
    certs.init_ca(directory)
    certs.issue(directory, "n1", "node", addresses=("127.0.0.1",))
    certs.issue(directory, "n2", "node", addresses=("127.0.0.1",))
    (directory / "garbage.pem").write_text("not PEM at all\n")
    return directory


BAD_MATERIAL = [
    (("n1.crt", "n2.key", "ca.crt"), "--tls-key {d}/n2.key is not the key of --tls-cert {d}/n1"),
    (("garbage.pem", "n1.key", "ca.crt"), "--tls-cert {d}/garbage.pem: not a PEM certificate"),
    (("n1.crt", "garbage.pem", "ca.crt"), "--tls-key {d}/garbage.pem: not a PEM private key"),
    (("n1.crt", "n1.key", "garbage.pem"), "--tls-ca {d}/garbage.pem: not a PEM CA certificate"),
]


@pytest.mark.parametrize(("files", "says"), BAD_MATERIAL)
@pytest.mark.parametrize(
    ("prog", "main"), [("ganeti-noded", noded_cli.main), ("ganeti-masterd", masterd_cli.main)]
)
def test_tls_files_a_daemon_cannot_use_are_named_in_words(
    prog: str,
    main: Callable[[list[str]], int],
    files: tuple[str, str, str],
    says: str,
    pki: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert, key, ca = (str(pki / name) for name in files)
    argv = ["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca, "--state-dir", str(tmp_path)]
    lines = refused(main, argv, capsys)
    check_one_line(prog, lines, says.format(d=pki))


def test_good_tls_files_pass_the_check(pki: Path) -> None:
    tls.check_server_material(pki / "n1.crt", pki / "n1.key", pki / "ca.crt")


@pytest.mark.parametrize(
    ("module", "prog"), [("noded", "ganeti-noded"), ("masterd.daemon", "ganeti-masterd")]
)
def test_a_state_dir_that_cannot_be_made_is_named_by_its_flag(
    module: str, prog: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    state_dir = tmp_path / "a-file" / "state"
    done = run_noded("--state-dir", str(state_dir), "--port", "1", module=module)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"{prog}: cannot start: --state-dir {state_dir}: "), last
    assert "Not a directory" in last


@pytest.mark.parametrize(
    ("module", "prog"), [("noded", "ganeti-noded"), ("masterd.daemon", "ganeti-masterd")]
)
def test_an_abbreviated_flag_is_refused_not_taken_for_a_longer_one(
    module: str, prog: str, tmp_path: Path
) -> None:
    flag = {"noded": "--max-function", "masterd.daemon": "--heartbeat"}[module]
    done = run_noded(flag, "5", "--state-dir", str(tmp_path), module=module)
    assert done.returncode == 2
    check_one_line(prog, done.stderr.splitlines(), f"unrecognized arguments: {flag}")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("module", "prog"), [("noded", "ganeti-noded"), ("masterd.daemon", "ganeti-masterd")]
)
def test_a_port_in_use_is_one_line_with_a_hint_and_nothing_seems_to_have_run(
    module: str, prog: str, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        done = run_noded("--port", str(port), "--state-dir", str(tmp_path / "state"),
                         module=module)  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last == (f"{prog}: cannot start: 127.0.0.1:{port}: address already in use "
                    f"(another {prog}?); stop what holds it, or choose another port "
                    "with --port")  # fmt: skip
    assert "daemon.stopping" not in done.stderr and "daemon.stopped" not in done.stderr
    assert "forkserver" not in done.stderr and "fork_server" not in done.stderr
    if module == "masterd.daemon":  # no store was made for a daemon that never served
        assert not (tmp_path / "state").exists()
