"""``make install`` into temporary places, then the installed ganeti-noded started as the
installed unit's ExecStart says, with the installed config, answering the installed
rpc-cli over the TLS the install set up (issue 33 item 2).  No systemd needed: the unit's
command line is what systemd would run.

To keep it near half a minute, the new virtualenv borrows the dependencies already in the
test's own (a ``.pth`` line), so that pip only builds and installs noded; every step of
the Makefile runs as written.  ``NODED_TEST_FULL_INSTALL=1`` installs from nothing (pip's
indexes; about a minute more)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from masterd.local import free_port
from tests.helpers import LEAK_MARKER, MARKER_VALUE

ROOT = Path(__file__).resolve().parent.parent
NAME = socket.gethostname()  # the default NODE_NAME: `hostname`
MASTER = "127.0.0.1:9"  # MASTER=: written into noded.toml (nothing listens: never reached)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),  # a virtualenv and pip install: about a minute under load
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
]


SOURCES = ("Makefile", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "doc", "noded",
           "masterd", "rpc_client")  # fmt: skip


def install(base: Path) -> dict[str, Path]:
    """``make install`` into temporary places, from a copy of the tree (pip builds in the
    tree it installs: a copy keeps two test workers, and the work tree, apart)."""
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
        else:
            shutil.copy2(ROOT / name, source / name)
    places = {name: base / name
              for name in ("PREFIX", "UNIT_DIR", "CONFIG_DIR", "BINDIR", "STATE_DIR")}  # fmt: skip
    if not os.environ.get("NODED_TEST_FULL_INSTALL"):
        lend_dependencies(places["PREFIX"])
    done = make("install", places, cwd=source, extra=(f"MASTER={MASTER}",))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "then, to see it answer: rpc-cli --tls-cert" in done.stdout
    return places


def lend_dependencies(prefix: Path) -> None:
    """A virtualenv in ``prefix`` that sees this test's packages (after its own)."""
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True, timeout=120)
    mine = sysconfig.get_paths()["purelib"]
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    theirs = subprocess.run([str(prefix / "bin" / "python"), "-c", code], check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()  # fmt: skip
    Path(theirs, "zz_lent_by_the_test.pth").write_text(mine + "\n")


def make(
    target: str, places: dict[str, Path], cwd: Path = ROOT, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    settings = [*(f"{name}={path}" for name, path in places.items()), *extra]
    return subprocess.run(
        ["make", "--no-print-directory", target, *settings, f"PYTHON={sys.executable}"],
        cwd=cwd, capture_output=True, text=True, timeout=540,
    )  # fmt: skip


def exec_start(unit: Path) -> list[str]:
    """The unit's ExecStart, as the words systemd would run."""
    lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].removeprefix("ExecStart="))


def test_a_fresh_install_starts_as_documented(tmp_path: Path) -> None:
    installed = install(tmp_path)
    check_the_commands_are_on_bindir(installed)
    check_the_configs_name_the_config_dir_and_the_files_exist(installed)
    check_a_second_install_keeps_the_certificates(installed)
    check_the_unit_starts_a_node_that_answers(installed, tmp_path / "node")
    check_the_master_unit_starts_a_masterd_that_answers(installed, tmp_path / "masterd")


def check_the_commands_are_on_bindir(installed: dict[str, Path]) -> None:
    for command in ("ganeti-noded", "ganeti-masterd", "rpc-cli"):
        link = installed["BINDIR"] / command
        assert link.resolve() == (installed["PREFIX"] / "bin" / command).resolve()
        assert os.access(link, os.X_OK)


def check_the_configs_name_the_config_dir_and_the_files_exist(installed: dict[str, Path]) -> None:
    config_dir = installed["CONFIG_DIR"]
    for config in ("noded.toml", "masterd.toml"):
        text = (config_dir / config).read_text()
        assert "/etc/ganeti" not in text and f'"{config_dir}/pki/' in text
        assert (config_dir / config).stat().st_mode & 0o777 == 0o600
    for name in (NAME, "operator", "masterd1", "ca"):
        assert (config_dir / "pki" / f"{name}.crt").is_file(), name
    assert f'tls-cert = "{config_dir}/pki/{NAME}.crt"' in (config_dir / "noded.toml").read_text()
    check_the_state_dir_and_the_master_are_written(installed)


def check_the_state_dir_and_the_master_are_written(installed: dict[str, Path]) -> None:
    """STATE_DIR in both units and masterd.toml; MASTER as noded.toml's masters, and the
    node's name (commented out) as NODE_NAME."""
    state_dir, config_dir = installed["STATE_DIR"], installed["CONFIG_DIR"]
    for daemon in ("ganeti-noded", "ganeti-masterd"):
        argv = exec_start(installed["UNIT_DIR"] / f"{daemon}.service")
        assert argv[argv.index("--state-dir") + 1] == str(state_dir / daemon)
    masterd = (config_dir / "masterd.toml").read_text()
    assert f'state-dir = "{state_dir}/ganeti-masterd"' in masterd and "/var/lib" not in masterd
    noded = tomllib.loads((config_dir / "noded.toml").read_text())
    assert noded["masters"] == [MASTER] and "name" not in noded
    assert f'# name = "{NAME}"' in (config_dir / "noded.toml").read_text()


def check_a_second_install_keeps_the_certificates(installed: dict[str, Path]) -> None:
    node_cert = installed["CONFIG_DIR"] / "pki" / f"{NAME}.crt"
    before = node_cert.read_bytes()
    done = make("install-certs", installed)
    assert done.returncode == 0 and f"keeping {node_cert}" in done.stdout
    assert node_cert.read_bytes() == before


def check_the_unit_starts_a_node_that_answers(installed: dict[str, Path], tmp_path: Path) -> None:
    """The installed ganeti-noded, as its unit says, answers the installed rpc-cli."""
    tmp_path.mkdir()
    for port in ports():
        with started_as_the_unit_says(installed, "ganeti-noded", port, tmp_path) as daemon:
            rpc_cli = [*installed_rpc_cli(installed), "--node", f"127.0.0.1:{port}"]
            if not answers([*rpc_cli, "identify"], daemon, tmp_path / "stderr.log"):
                continue
            call = run([*rpc_cli, "call", "echo", '{"value": 7}'])
            assert call.returncode == 0 and '"result": 7' in call.stdout, call.stderr
        assert daemon.returncode == 0
        return


def check_the_master_unit_starts_a_masterd_that_answers(
    installed: dict[str, Path], tmp_path: Path
) -> None:
    """The installed ganeti-masterd, as its unit says, answers the installed rpc-cli."""
    tmp_path.mkdir()
    for port in ports():
        with started_as_the_unit_says(installed, "ganeti-masterd", port, tmp_path) as daemon:
            rpc_cli = [*installed_rpc_cli(installed), "--master", f"127.0.0.1:{port}"]
            if not answers([*rpc_cli, "nodes"], daemon, tmp_path / "stderr.log"):
                continue
        assert daemon.returncode == 0
        return


def ports() -> Iterator[int]:
    """Free loopback ports, a new one while the one before was taken before the daemon
    bound it (other tests pick free ports too); three at most."""
    for _ in range(3):
        yield free_port()
    pytest.fail("three free ports were taken before the daemon could bind them")


@contextlib.contextmanager
def started_as_the_unit_says(
    installed: dict[str, Path], daemon: str, port: int, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The unit's ExecStart with the installed config, on a loopback port and with a
    state directory of the test's (systemd's StateDirectory); SIGTERM at the end."""
    argv = exec_start(installed["UNIT_DIR"] / f"{daemon}.service")
    assert argv[0] == str(installed["PREFIX"] / "bin" / daemon)
    config = installed["CONFIG_DIR"] / (
        "noded.toml" if daemon == "ganeti-noded" else "masterd.toml"
    )
    assert argv[argv.index("--config") + 1] == str(config)
    argv[argv.index("--state-dir") + 1] = str(tmp_path / "state")
    env = {"PATH": os.environ["PATH"], LEAK_MARKER: MARKER_VALUE}  # nothing of this tree
    with (tmp_path / "stderr.log").open("w") as stderr, subprocess.Popen(
        [*argv, "--bind", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=stderr,
    ) as process:  # fmt: skip
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def installed_rpc_cli(installed: dict[str, Path]) -> list[str]:
    """The rpc-cli on BINDIR with the operator's certificate the install made."""
    pki = installed["CONFIG_DIR"] / "pki"
    return [
        str(installed["BINDIR"] / "rpc-cli"),
        "--tls-cert", str(pki / "operator.crt"), "--tls-key", str(pki / "operator.key"),
        "--tls-ca", str(pki / "ca.crt"),
    ]  # fmt: skip


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"]}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def answers(argv: list[str], daemon: subprocess.Popen[bytes], log: Path) -> bool:
    """Wait until ``argv`` (an rpc-cli) succeeds; False if the daemon exited because its
    port was taken meanwhile."""
    end = time.monotonic() + 60
    while (done := run(argv)).returncode != 0:
        if daemon.poll() is not None and "address already in use" in log.read_text():
            return False
        assert daemon.poll() is None, f"the daemon exited: {log.read_text()}"
        assert time.monotonic() < end, f"{done.stderr}\nthe daemon's log: {log.read_text()}"
        time.sleep(0.2)  # a polling interval, not a wait for an event
    return True


def test_a_copied_ca_without_its_key_gets_the_command_to_run_on_the_cas_machine(
    tmp_path: Path,
) -> None:
    pki = tmp_path / "CONFIG_DIR" / "pki"
    pki.mkdir(parents=True)
    (pki / "ca.crt").write_text("the cluster's CA certificate, copied\n")
    places = {"PREFIX": tmp_path / "PREFIX", "CONFIG_DIR": tmp_path / "CONFIG_DIR"}
    done = make("install-certs", places)
    assert done.returncode == 0, done.stderr
    assert f"MISSING {pki}/{NAME}.crt" in done.stdout
    assert f"rpc-cli certs issue CA_DIR {NAME} --node --address {NAME}" in done.stdout
    assert sorted(path.name for path in pki.iterdir()) == ["ca.crt"]  # nothing made
