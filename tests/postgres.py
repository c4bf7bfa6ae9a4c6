"""A real PostgreSQL for the tests: ``initdb`` + ``pg_ctl`` in a temporary directory, on a
free loopback port, stopped (by its data directory) when the tests are done.

One server per pytest-xdist worker (a session fixture, tests/conftest.py), one database
per test.  As root the server runs as the ``postgres`` user (PostgreSQL refuses root).
Where PostgreSQL is not installed the tests that need it skip with one line saying how
to install it; under CI (``CI=true``) they fail instead, so that a CI image without it
cannot pass by skipping.

``fsync=off``: a test's server is thrown away, never recovered from a crash; it makes
CREATE DATABASE and commits fast.  Nothing else differs from a production server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from masterd.local import free_port

INSTALL_HINT = "PostgreSQL is not installed: apt-get install postgresql (its initdb and pg_ctl)"
_START_TIMEOUT_S = 30
_SUPERUSER = "masterd"


def postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: PATH, ``pg_config --bindir``, Debian's
    versioned directory (the newest); None if not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()  # fmt: skip
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versioned[-1]).parent if versioned else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def require_postgres() -> Path:
    """The bindir, or skip (fail under ``CI=true``) saying how to install PostgreSQL."""
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{INSTALL_HINT} (CI=true: a missing PostgreSQL fails the run)")
        pytest.skip(INSTALL_HINT)
    if os.geteuid() == 0 and not _has_user("postgres"):
        pytest.skip("running as root without a 'postgres' user to run PostgreSQL as")
    return bindir


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PostgresServer:
    """One throw-away cluster: ``start()``, ``stop()`` (also for outage tests), ``url()``."""

    def __init__(self, bindir: Path, *, fsync: bool = False) -> None:
        self.bindir, self.fsync = bindir, fsync
        self.root = Path(tempfile.mkdtemp(prefix="masterd-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            shutil.chown(self.root, self._user)
        self._run("initdb", "-D", str(self.data), "-U", _SUPERUSER, "--auth=trust",
                  "-E", "UTF8", "--no-sync")  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / program), *args], cwd=self.root, user=self._user,
            check=True, capture_output=True, timeout=_START_TIMEOUT_S,
        )  # fmt: skip

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", str(_START_TIMEOUT_S), "start")  # fmt: skip

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: connections are cut, the server exits."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def postmaster_pid(self) -> int:
        """The server's main process (the first line of ``postmaster.pid``)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def running(self) -> bool:
        status = subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
                                user=self._user, capture_output=True, timeout=10)  # fmt: skip
        return status.returncode == 0

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def _psql(self, sql: str) -> None:
        subprocess.run([str(self.bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1",
                        "-d", self.url(), "-c", sql],
                       check=True, capture_output=True, timeout=30)  # fmt: skip


def start_server() -> PostgresServer:
    """A started server, or skip/fail as :func:`require_postgres` says."""
    server = PostgresServer(require_postgres())
    try:
        server.start()
    except BaseException:
        server.remove()
        raise
    return server
