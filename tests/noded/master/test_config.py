"""--master and --labels on the command line and in the TOML config."""

from __future__ import annotations

from pathlib import Path

import pytest

from noded.cli import parse_config


def test_flags_are_comma_separated() -> None:
    _, config = parse_config(["--master", "10.0.0.1:1812, m2:1812", "--labels", "a,b"])
    assert config.masters == ("10.0.0.1:1812", "m2:1812")
    assert config.labels == ("a", "b")
    assert config.spool_max_events == 10000


def test_the_config_file_says_masters_as_a_list(tmp_path: Path) -> None:
    path = tmp_path / "noded.toml"
    path.write_text('masters = ["m1:1812", "[::1]:1812"]\nlabels = ["rack1"]\n')
    _, config = parse_config(["--config", str(path)])
    assert config.masters == ("m1:1812", "[::1]:1812")
    assert config.labels == ("rack1",)


@pytest.mark.parametrize("bad", ["m1", "m1:", ":1812", "m1:99999", "m1:http"])
def test_a_master_is_host_and_port(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--master", bad])
    assert "expected HOST:PORT" in capsys.readouterr().err
