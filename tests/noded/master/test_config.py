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


@pytest.mark.parametrize("bad", ["m1:", ":1812", "m1:99999", "m1:http"])
def test_a_master_is_host_and_port(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--master", bad])
    assert "expected HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["http://127.0.0.1:1812", "https://m1:1812", "m1:1812/"])
def test_a_master_url_is_refused(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--master", url])
    assert "give HOST:PORT, not a URL" in capsys.readouterr().err


def test_a_master_without_a_port_is_on_1812_as_for_rpc_cli(tmp_path: Path) -> None:
    _, config = parse_config(["--master", "m1,127.0.0.1,[::1],m2:1813"])
    assert config.masters == ("m1:1812", "127.0.0.1:1812", "[::1]:1812", "m2:1813")
    path = tmp_path / "noded.toml"
    path.write_text('masters = ["m1"]\n')
    assert parse_config(["--config", str(path)])[1].masters == ("m1:1812",)


def test_a_node_serving_tls_talks_to_its_masters_with_its_own_certificate(
    tmp_path: Path,
) -> None:
    import ssl

    from noded.master.context import _client_tls
    from tests.pki import make_pki

    pki = make_pki(tmp_path)
    _, config = parse_config([*pki.node_args("node1"), "--master", "m1:1812"])
    context = _client_tls(config)
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    _, plain = parse_config(["--master", "m1:1812"])
    assert _client_tls(plain) is None
