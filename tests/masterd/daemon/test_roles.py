"""ganeti-masterd over TLS: what each certificate's role may call, against a real masterd
with certificates made by ``rpc-cli certs issue``."""

from __future__ import annotations

import asyncio
import datetime
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from masterd.daemon.cli import parse_config
from masterd.local import LocalNode
from rpc_client import certs
from rpc_client.tls import TLSConfig
from tests.helpers import node_env, run_noded
from tests.masterd.daemon.running import Masterd, events, registration, run_masterd, until
from tests.noded.master.running import FUNCTIONS, run_call, wait_state
from tests.pki import Pki

NODE_PROCEDURES = ("Register", "Heartbeat", "Report", "CallMaster")
OPERATOR_PROCEDURES = ("ListNodes", "WaitForEvents")


@dataclass
class Cluster:
    masterd: Masterd
    pki: Pki

    def context(self, name: str, role: certs.Role = "node") -> ssl.SSLContext:
        made = certs.issue(self.pki.ca, name, role, addresses=("127.0.0.1",), force=True)
        return TLSConfig(cert=made.cert, key=made.key, ca=self.pki.ca / "ca.crt").client_context()


@pytest.fixture
async def cluster(pki: Pki, tmp_path: Path) -> AsyncIterator[Cluster]:
    own = certs.issue(pki.ca, "masterd1", "masterd", addresses=("127.0.0.1",))
    operator = pki.master("operator1").client_context()
    args = ["--tls-cert", str(own.cert), "--tls-key", str(own.key),
            "--tls-ca", str(pki.ca / "ca.crt"), "--commands", "tests.commands"]  # fmt: skip
    async with run_masterd(args, workdir=tmp_path / "m", client_ssl=operator) as masterd:
        yield Cluster(masterd, pki)


def bodies(node: dict[str, Any]) -> dict[str, Any]:
    """A valid body of each node procedure for the node registered as ``node``."""
    return {
        "Register": node,
        "Heartbeat": {"uuid": node["uuid"], "instance": node["instance"], "running": 0},
        "Report": {"uuid": node["uuid"], "spool": "s1", "events": events(1)},
        "CallMaster": {"uuid": node["uuid"], "command": "allocate_slot",
                       "args": {"disk": "sdb"}, "timeout": 5},
    }  # fmt: skip


async def status(
    masterd: Masterd, procedure: str, body: Any, context: ssl.SSLContext
) -> tuple[int, Any]:
    code, answer, _ = await masterd.put(procedure, body, client_ssl=context)
    return code, answer


async def test_a_node_calls_node_procedures_as_itself_only(cluster: Cluster) -> None:
    masterd, n1 = cluster.masterd, cluster.context("n1")
    node = registration("n1")
    for procedure, body in bodies(node).items():
        code, answer = await status(masterd, procedure, body, n1)
        assert code == 200, (procedure, answer)
    code, answer = await status(masterd, "CallMaster", bodies(node)["CallMaster"], n1)
    assert answer["result"]["node"] == "n1"  # the certificate's node, and the registered one
    wait = {"from": 0, "timeout": 0}
    for procedure, body in (("ListNodes", {}), ("WaitForEvents", wait)):
        code, answer = await status(masterd, procedure, body, n1)
        assert (code, answer["error"]["type"]) == (403, "Forbidden"), procedure
        assert "operator certificates" in answer["error"]["message"]
    for path in ("/metrics", "/openapi.json"):
        code, _ = await masterd.get(path, client_ssl=n1)
        assert code == 403, path


async def test_a_node_may_not_act_as_another(cluster: Cluster) -> None:
    masterd, n1, n2 = cluster.masterd, cluster.context("n1"), cluster.context("n2")
    node = registration("n1")
    assert (await status(masterd, "Register", node, n1))[0] == 200
    code, answer = await status(masterd, "Register", registration("n1"), n2)
    assert (code, answer["error"]["type"]) == (403, "Forbidden")
    assert "may not act as node 'n1'" in answer["error"]["message"]
    # n1's uuid, whatever name the body gives
    taken = {**node, "name": "n2"}
    for procedure, body in {**bodies(node), "Register": taken}.items():
        code, answer = await status(masterd, procedure, body, n2)
        assert (code, answer["error"]["type"]) == (403, "Forbidden"), procedure
    nodes = {n["name"]: n for n in (await masterd.ok("ListNodes", {}))["nodes"]}
    assert sorted(nodes) == ["n1"] and nodes["n1"]["uuid"] == node["uuid"]


async def test_an_operator_calls_operator_procedures_only(cluster: Cluster) -> None:
    masterd = cluster.masterd
    await status(masterd, "Register", registration("n1"), cluster.context("n1"))
    assert [n["name"] for n in (await masterd.ok("ListNodes", {}))["nodes"]] == ["n1"]
    answer = await masterd.ok("WaitForEvents", {"from": 0, "timeout": 0})
    assert [e["type"] for e in answer["events"]] == ["node.registered"]
    for path in ("/metrics", "/openapi.json"):
        assert (await masterd.get(path))[0] == 200
    operator = masterd.client_ssl
    assert operator is not None
    for procedure, body in bodies(registration("operator1")).items():
        code, answer = await status(masterd, procedure, body, operator)
        assert (code, answer["error"]["type"]) == (403, "Forbidden"), procedure
        assert "node certificates" in answer["error"]["message"]


def logged(masterd: Masterd, name: str) -> list[str]:
    return [line for line in masterd.log_text().splitlines() if f" {name} " in line]


async def test_a_refused_role_is_logged_with_the_caller_and_the_procedure(
    cluster: Cluster,
) -> None:
    masterd = cluster.masterd
    code, _ = await status(masterd, "ListNodes", {}, cluster.context("n1"))
    assert code == 403

    async def refused() -> bool:
        return bool(logged(masterd, "role.refused"))

    await until(refused)
    (line,) = logged(masterd, "role.refused")
    assert "client=n1 role=node peer=127.0.0.1 procedure=ListNodes" in line, line
    assert "operator certificates" in line and "WARNING" in line


async def test_masterds_own_certificate_may_call_nothing(cluster: Cluster) -> None:
    masterd, own = cluster.masterd, cluster.context("masterd2", "masterd")
    calls = [*bodies(registration("masterd2")).items(), ("ListNodes", {})]
    for procedure, body in calls:
        code, answer = await status(masterd, procedure, body, own)
        assert (code, answer["error"]["type"]) == (403, "Forbidden"), procedure


def old_certificate(pki: Pki, tmp_path: Path, usage: x509.ObjectIdentifier) -> ssl.SSLContext:
    """A node certificate as ``rpc-cli`` made them before 1.2: no role in the subject."""
    ca_cert = x509.load_pem_x509_certificate((pki.ca / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki.ca / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n1")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "old.crt", tmp_path / "old.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return TLSConfig(cert=cert_path, key=key_path, ca=pki.ca / "ca.crt").client_context()


async def test_an_old_node_certificate_is_told_to_reissue(cluster: Cluster, tmp_path: Path) -> None:
    old = old_certificate(cluster.pki, tmp_path, ExtendedKeyUsageOID.CLIENT_AUTH)
    code, answer = await status(cluster.masterd, "Register", registration("n1"), old)
    assert (code, answer["error"]["type"]) == (403, "Forbidden")
    assert "names no role" in answer["error"]["message"]
    assert "certs issue" in answer["error"]["message"]


async def test_certificates_that_cannot_be_clients_are_refused_at_the_handshake(
    cluster: Cluster, tmp_path: Path
) -> None:
    server_only = old_certificate(cluster.pki, tmp_path, ExtendedKeyUsageOID.SERVER_AUTH)
    made = certs.issue(cluster.pki.other_ca, "intruder", "master", force=True)
    foreign = TLSConfig(cert=made.cert, key=made.key, ca=cluster.pki.ca / "ca.crt")
    no_certificate = ssl.create_default_context(cafile=str(cluster.pki.ca / "ca.crt"))
    for context in (server_only, foreign.client_context(), no_certificate):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await status(cluster.masterd, "ListNodes", {}, context)
    assert (await cluster.masterd.put("ListNodes", {}))[0] == 200  # still serving


async def test_plain_http_to_the_tls_port_gets_no_answer(cluster: Cluster) -> None:
    url = f"http://{cluster.masterd.address}/ListNodes"
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.put(url, data=b"{}") as response:
                assert response.status != 200
    await until(handshake_failure_logged(cluster.masterd))
    (line,) = logged(cluster.masterd, "tls.handshake_failed")
    assert "plain HTTP: the client spoke HTTP to this TLS port" in line, line


def handshake_failure_logged(masterd: Masterd) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(logged(masterd, "tls.handshake_failed"))

    return check


async def test_a_refused_handshake_is_logged_with_the_peer_and_the_reason(
    cluster: Cluster,
) -> None:
    no_certificate = ssl.create_default_context(cafile=str(cluster.pki.ca / "ca.crt"))
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await status(cluster.masterd, "ListNodes", {}, no_certificate)
    await until(handshake_failure_logged(cluster.masterd))
    (line,) = logged(cluster.masterd, "tls.handshake_failed")
    assert re.search(r"WARNING tls.handshake_failed peer=127\.0\.0\.1:\d+ reason=.*no certificate",
                     line), line  # fmt: skip
    assert (await cluster.masterd.put("ListNodes", {}))[0] == 200  # still serving


async def test_a_client_silent_past_the_handshake_timeout_is_logged(
    pki: Pki, tmp_path: Path
) -> None:
    own = certs.issue(pki.ca, "masterd1", "masterd", addresses=("127.0.0.1",))
    args = ["--tls-cert", str(own.cert), "--tls-key", str(own.key),
            "--tls-ca", str(pki.ca / "ca.crt"), "--handshake-timeout", "0.5"]  # fmt: skip
    operator = pki.master("operator1").client_context()
    async with run_masterd(args, workdir=tmp_path, client_ssl=operator) as masterd:
        _, writer = await asyncio.open_connection("127.0.0.1", masterd.port)
        try:  # connected, and says nothing
            await until(handshake_failure_logged(masterd))
        finally:
            writer.close()
        (line,) = logged(masterd, "tls.handshake_failed")
        assert "timeout: no complete handshake in time" in line, line


def test_the_tls_flags_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--tls-cert", "masterd.crt"])
    assert "go together" in capsys.readouterr().err


async def test_a_node_serving_tls_registers_and_calls_masterd_as_itself(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A real ganeti-noded with its node certificate, --master this masterd: it registers
    over TLS, and a function's call_master reaches a command as that node."""
    args = ["--functions", FUNCTIONS, "--master", cluster.masterd.address, "--name", "node1",
            *cluster.pki.node_args("node1")]  # fmt: skip
    operator = cluster.pki.tls("operator1")
    async with LocalNode.running(
        args, env=node_env(), workdir=tmp_path / "n", client_tls=operator
    ) as node:
        await wait_state(cluster.masterd, "node1", "alive")
        answer = (await run_call(node, "ask_master", {"command": "whoami"})).result
    assert answer == {"result": "node1"}


async def test_a_node_with_another_nodes_certificate_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    """ganeti-noded itself refuses to start as node2 with node1's certificate (masterd
    would refuse its Register for ever: test_a_node_may_not_act_as_another)."""
    args = ["--functions", FUNCTIONS, "--master", cluster.masterd.address, "--name", "node2",
            *cluster.pki.node_args("node1"), "--state-dir", str(tmp_path / "n")]  # fmt: skip
    done = run_noded(*args, timeout_s=30)
    assert done.returncode == 2, done
    assert "--name node2 is not the node name in --tls-cert" in done.stderr, done.stderr
    assert "node2" not in await cluster.masterd.nodes()
