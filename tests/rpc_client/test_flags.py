"""Number settings of both daemons and rpc-cli: NaN and infinity are refused with the
flag's (or the TOML key's) name, by a flag and by ``--config`` alike.

NaN passes every ``value <= 0`` check: ``--result-ttl nan`` ran a request_id again on
each retry, and ``--limit-check-interval nan`` turned the call limits off."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from noded.cli import parse_config
from tests.helpers import run_noded


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_noded(*args, module=module, timeout_s=30)


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--result-ttl", "nan"), ("--limit-check-interval", "nan"), ("--import-timeout", "inf"),
     ("--max-wait", "-inf"), ("--limit-cpu-s", "nan"), ("--kill-grace", "nan")],
)  # fmt: skip
def test_noded_refuses_a_number_flag_that_is_not_finite(
    flag: str, value: str, tmp_path: Path
) -> None:
    done = run("noded", "--state-dir", str(tmp_path), "--port", "0", f"{flag}={value}")
    assert done.returncode == 2, done.stderr
    assert f"argument {flag}: '{value}': give a finite number" in done.stderr
    assert not (tmp_path / "journal").exists()


@pytest.mark.parametrize("setting", ["result-ttl = nan", "limit-check-interval = inf",
                                     "shutdown-grace = -inf"])  # fmt: skip
def test_noded_refuses_a_toml_number_that_is_not_finite(setting: str, tmp_path: Path) -> None:
    config = tmp_path / "noded.toml"
    config.write_text(setting + "\n")
    done = run("noded", "--state-dir", str(tmp_path), "--port", "0", "--config", str(config))
    assert done.returncode == 2, done.stderr
    key, value = setting.split(" = ")
    assert f"{config}: {key} = {value}: give a finite number" in done.stderr


def test_the_edges_that_are_numbers_still_hold() -> None:
    _, config = parse_config(["--result-ttl", "0.001", "--kill-grace", "0",
                              "--limit-cpu-s", "1e-3"])  # fmt: skip
    assert (config.result_ttl_s, config.kill_grace_s, config.limit_cpu_s) == (0.001, 0, 0.001)
    with pytest.raises(SystemExit):
        parse_config(["--result-ttl", "0"])
    with pytest.raises(SystemExit):
        parse_config(["--shutdown-grace", "-0.1"])


def test_the_config_object_itself_refuses_nan() -> None:
    from noded.config import NodedConfig

    with pytest.raises(ValueError, match="result_ttl_s must be > 0 and finite, got nan"):
        NodedConfig(result_ttl_s=float("nan"))
    with pytest.raises(ValueError, match="kill_grace_s must be >= 0 and finite, got inf"):
        NodedConfig(kill_grace_s=float("inf"))


def test_masterd_refuses_nan_by_flag_and_by_toml(tmp_path: Path) -> None:
    done = run("masterd.daemon", "--state-dir", str(tmp_path), "--heartbeat-s", "nan")
    assert done.returncode == 2 and "argument --heartbeat-s: 'nan'" in done.stderr
    config = tmp_path / "masterd.toml"
    config.write_text("job-ttl = inf\n")
    done = run("masterd.daemon", "--state-dir", str(tmp_path), "--config", str(config))
    assert done.returncode == 2 and f"{config}: job-ttl = inf: give a finite" in done.stderr


@pytest.mark.parametrize(("flag", "value"), [("--timeout", "nan"), ("--wait", "inf")])
def test_rpc_cli_gather_refuses_a_wait_that_is_not_finite(flag: str, value: str) -> None:
    done = run("masterd.cli", "gather", "echo", "--nodes", "n1", flag, value)
    assert done.returncode == 2 and f"argument {flag}: '{value}'" in done.stderr
