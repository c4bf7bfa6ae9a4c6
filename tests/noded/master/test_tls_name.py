"""A node on TLS is named by its certificate: without ``--name`` it registers with
ganeti-masterd under the certificate's node name, and a ``--name`` that is not that name
is refused at start in one line (masterd would refuse its Register for ever)."""

from __future__ import annotations

import socket
from pathlib import Path

from masterd.local import LocalNode
from rpc_client import certs
from rpc_client.tls import TLSConfig
from tests.helpers import node_env, run_noded
from tests.masterd.daemon.running import registration, run_masterd
from tests.noded.master.running import FUNCTIONS, wait_state
from tests.pki import Pki, tls_args


async def test_a_tls_node_without_name_registers_as_its_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    """Before, it registered as the host name and masterd refused it at every attempt
    ("this certificate is node 'node1''s; it may not act as node '<host>'")."""
    assert socket.gethostname() != "node1"
    own = certs.issue(pki.ca, "masterd1", "masterd", addresses=("127.0.0.1",), force=True)
    operator = pki.master("operator1")
    async with run_masterd(tls_args(own, pki.ca), workdir=tmp_path / "m",
                           client_ssl=operator.client_context()) as masterd:  # fmt: skip
        args = ["--functions", FUNCTIONS, "--master", masterd.address, *pki.node_args("node1")]
        async with LocalNode.running(args, env=node_env(), workdir=tmp_path / "n",
                                     client_tls=operator) as node:  # fmt: skip
            await wait_state(masterd, "node1", "alive")
            async with node.client() as client:
                assert (await client.identify())["name"] == "node1"
        assert "role.refused" not in masterd.log_text()


def test_a_name_that_is_not_the_certificates_is_refused_at_start(pki: Pki, tmp_path: Path) -> None:
    """Before, it started, and masterd refused its Register for ever."""
    done = run_noded("--master", "127.0.0.1:1", "--name", "vm", *pki.node_args("node1"),
                     "--state-dir", str(tmp_path / "state"), "--port", "0",
                     timeout_s=30)  # fmt: skip
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0] == (
        "ganeti-noded: error: --name vm is not the node name in --tls-cert "
        f"{tmp_path / 'ca' / 'node1.crt'} (node1): ganeti-masterd takes a node only as "
        "its certificate's node"
    ), lines[0]
    assert "leave out --name" in lines[1] and "certs issue CA_DIR vm --node" in lines[1], lines[1]
    assert not (tmp_path / "state").exists(), "it made its state before refusing"


def test_the_name_given_is_kept_without_masters_or_when_it_is_the_certificates(
    pki: Pki, tmp_path: Path
) -> None:
    from noded.cli import parse_config
    from noded.identity import name_under_tls

    def named(*args: str) -> str | None:
        return name_under_tls(parse_config([*args, *pki.node_args("node1")])[1])

    assert named() == "node1"
    assert named("--name", "node1", "--master", "127.0.0.1") == "node1"
    assert named("--name", "vm") == "vm"  # no master to refuse it: Identify says vm
    assert name_under_tls(parse_config(["--name", "vm"])[1]) == "vm"
    assert name_under_tls(parse_config([])[1]) is None


async def test_masterds_refusal_names_the_certificates_node_once_quoted(
    pki: Pki, tmp_path: Path
) -> None:
    """Before: "this certificate is node 'node1''s; it may not act as node 'vm'"."""
    own = certs.issue(pki.ca, "masterd1", "masterd", addresses=("127.0.0.1",), force=True)
    async with run_masterd(
        tls_args(own, pki.ca),
        workdir=tmp_path / "m",
        client_ssl=pki.master("operator1").client_context(),
    ) as masterd:
        made = certs.issue(pki.ca, "node1", "node", force=True)
        node1 = TLSConfig(cert=made.cert, key=made.key, ca=pki.ca / "ca.crt").client_context()
        code, answer, _ = await masterd.put("Register", registration("vm"), client_ssl=node1)
    assert (code, answer["error"]["type"]) == (403, "Forbidden"), answer
    assert answer["error"]["message"] == (
        "this certificate is for node 'node1'; it may not act as node 'vm' (start "
        "ganeti-noded without --name, or with --name node1)")  # fmt: skip
