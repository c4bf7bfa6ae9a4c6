"""Mutual TLS on loopback, with certificates made by the project's own tooling."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from masterd.call import call_function
from masterd.cluster import Cluster
from masterd.local import LocalNode
from masterd.node import load_nodes
from rpc_client import certs
from rpc_client.client import NodeClient
from rpc_client.errors import ConnectionLost, Forbidden, TLSError
from rpc_client.tls import TLSConfig, fingerprint
from tests.helpers import eventually, run_node, run_noded
from tests.pki import Pki, tls_args


async def test_a_master_with_the_right_certificate_is_served(pki: Pki) -> None:
    tls = pki.master()
    async with run_node(pki.node_args(), client_tls=tls) as node:
        async with NodeClient("127.0.0.1", node.port, name="node1", tls=tls) as client:
            assert client.base_url.startswith("https://")
            assert await call_function(client, "echo", {"value": "secret"}, timeout=10) == "secret"


async def raw_handshake(node: LocalNode, context: ssl.SSLContext) -> bytes:
    """A TLS connection and one request; what came back (b"" if the node hung up)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", node.port, ssl=context, server_hostname="node1"), 10
    )
    try:
        writer.write(b"PUT /Identify HTTP/1.1\r\nHost: node1\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()


async def test_a_client_without_a_certificate_never_reaches_a_handler(pki: Pki) -> None:
    async with run_node(pki.node_args(), client_tls=pki.master()) as node:
        context = ssl.create_default_context(cafile=str(pki.ca / "ca.crt"))
        assert await raw_handshake(node, context) == b""
        assert "Identify" not in node.log_text() and "http." not in node.log_text()
        # the node says so, with the peer and the reason
        await eventually(lambda: "tls.handshake_failed" in node.log_text())
        assert re.search(r"tls.handshake_failed .*peer=127\.0\.0\.1:\d+ .*no certificate",
                         node.log_text())  # fmt: skip


async def test_a_client_silent_past_the_handshake_timeout_is_logged_as_such(pki: Pki) -> None:
    """The handshake's time limit (--idle-timeout) ends a connection that says nothing,
    logged as a timeout (uvloop raises it as ConnectionAbortedError: it was logged as a
    client that left)."""
    args = [*pki.node_args(), "--idle-timeout", "0.5"]
    async with run_node(args, client_tls=pki.master()) as node:
        _, writer = await asyncio.open_connection("127.0.0.1", node.port)
        try:
            await eventually(lambda: "tls.handshake_failed" in node.log_text())
        finally:
            writer.close()
        assert "timeout: no complete handshake in time" in node.log_text()


async def test_plain_http_to_the_tls_port_is_logged_as_such(pki: Pki) -> None:
    async with run_node(pki.node_args(), client_tls=pki.master()) as node:
        async with NodeClient("127.0.0.1", node.port, name="node1") as client:
            with pytest.raises(ConnectionLost):
                await client.identify()
        await eventually(lambda: "tls.handshake_failed" in node.log_text())
        assert "plain HTTP: the client spoke HTTP to this TLS port" in node.log_text()


@pytest.mark.parametrize("which", ["other CA", "expired"])
async def test_bad_client_certificates_are_refused(pki: Pki, which: str) -> None:
    if which == "other CA":
        made = certs.issue(pki.other_ca, "intruder", "master")
    else:
        made = certs.issue(
            pki.ca,
            "old-master",
            "master",
            days=1,
            not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=3),
        )
    bad = TLSConfig(cert=made.cert, key=made.key, ca=pki.ca / "ca.crt")
    async with run_node(pki.node_args(), client_tls=pki.master()) as node:
        async with NodeClient("127.0.0.1", node.port, name="node1", tls=bad) as client:
            # TLS 1.3: the refusal comes after the client's handshake, as a reset
            with pytest.raises((TLSError, ConnectionLost), match="certificate"):
                await client.identify()
        assert await raw_handshake(node, bad.client_context()) == b""
        await eventually(lambda: "tls.handshake_failed" in node.log_text())
        words = "unknown CA" if which == "other CA" else "expired"
        assert re.search(f"tls.handshake_failed .*peer=127.0.0.1:.*{words}", node.log_text())


async def test_the_client_refuses_a_node_whose_certificate_does_not_verify(pki: Pki) -> None:
    impostor = certs.issue(pki.other_ca, "node1", "node", addresses=("127.0.0.1",))
    args = tls_args(impostor, pki.ca)
    master = pki.master()
    # the launcher's probe trusts the impostor's CA, so that the daemon can start at all
    probe = TLSConfig(cert=master.cert, key=master.key, ca=pki.other_ca / "ca.crt")
    async with run_node(args, client_tls=probe) as node:
        async with NodeClient("127.0.0.1", node.port, name="node1", tls=master) as client:
            with pytest.raises(TLSError, match="certificate verify failed"):
                await client.identify()


async def test_the_client_checks_the_nodes_name(pki: Pki) -> None:
    tls = pki.master()
    async with run_node(pki.node_args("node1"), client_tls=tls) as node:
        async with NodeClient("127.0.0.1", node.port, name="node2", tls=tls) as client:
            with pytest.raises(TLSError, match="node2"):
                await client.identify()
        shared = TLSConfig(cert=tls.cert, key=tls.key, ca=tls.ca, verify_name=False)
        async with NodeClient("127.0.0.1", node.port, name="node2", tls=shared) as client:
            assert (await client.identify())["pid"] == node.pid


async def test_allowed_clients_by_fingerprint_or_name(pki: Pki) -> None:
    good, other = pki.master("master1"), pki.master("master2")
    der = ssl.PEM_cert_to_DER_cert(good.cert.read_text())
    for allowed in (fingerprint(der), "master1"):
        args = [*pki.node_args(), "--tls-allowed-clients", allowed]
        async with run_node(args, client_tls=good) as node:
            async with NodeClient("127.0.0.1", node.port, name="node1", tls=other) as client:
                with pytest.raises(Forbidden, match="master2"):
                    await client.identify()
            async with node.client(name="node1") as client:
                assert (await client.identify())["pid"] == node.pid


async def test_sighup_reloads_the_certificate_while_a_long_call_runs(pki: Pki) -> None:
    tls = pki.master()
    first = certs.issue(pki.ca, "node1", "node", addresses=("127.0.0.1",))
    args = tls_args(first, pki.ca)
    async with run_node(args, client_tls=tls) as node, node.client(name="node1") as client:
        long_call = asyncio.create_task(
            call_function(client, "sleep", {"seconds": 2}, timeout=20, wait_s=5)
        )
        await asyncio.sleep(0.3)
        old_serial = await served_certificate(node)
        certs.issue(pki.ca, "node1", "node", addresses=("127.0.0.1",), force=True)  # rotated
        node.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert await served_certificate(node) != old_serial
        assert await asyncio.wait_for(long_call, 20) == 2
        assert "tls.reloaded" in node.log_text()


async def served_certificate(node: LocalNode) -> bytes:
    assert node.client_tls is not None
    context = node.client_tls.client_context()
    _, writer = await asyncio.open_connection(
        "127.0.0.1", node.port, ssl=context, server_hostname="node1"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return bytes(der)


async def test_nodes_files_carry_tls(pki: Pki, tmp_path: Path) -> None:
    tls = pki.master()
    async with run_node(pki.node_args(), client_tls=tls) as node:
        nodes = tmp_path / "nodes.toml"
        nodes.write_text(
            f'[tls]\ncert = "{tls.cert}"\nkey = "{tls.key}"\nca = "{tls.ca}"\n'
            f'[[node]]\nname = "node1"\naddress = "127.0.0.1"\nport = {node.port}\n'
        )
        assert load_nodes(nodes)[0].tls == tls
        async with Cluster.from_file(nodes) as cluster:
            summary = await cluster.gather("echo", {"value": 1}, timeout=10)
        assert summary.names("ok") == ["node1"]


def test_certs_tooling_writes_safe_modes(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "masterd.cli", "certs"]
    assert (
        subprocess.run(
            [*run, "init", str(tmp_path / "ca")], capture_output=True, timeout=60
        ).returncode
        == 0
    )
    done = subprocess.run(
        [*run, "issue", str(tmp_path / "ca"), "n1", "--node"], capture_output=True, timeout=60
    )
    assert done.returncode == 0
    assert stat.S_IMODE(os.stat(tmp_path / "ca").st_mode) == 0o700
    for key in ("ca.key", "n1.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "ca" / key).st_mode) == 0o600
    again = subprocess.run(
        [*run, "init", str(tmp_path / "ca")], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 2 and "already holds a CA" in again.stderr


def test_without_tls_a_non_loopback_bind_names_the_way_out() -> None:
    done = run_noded("--bind", "0.0.0.0")
    assert done.returncode == 2
    assert "--tls-cert" in done.stderr and "--insecure" in done.stderr


async def test_another_clusters_ca_made_the_same_way_is_logged_as_unknown_ca(
    tmp_path: Path,
) -> None:
    """Two ``certs init`` with the defaults (two clusters): the second CA's certificate is
    an unknown CA's at the first cluster's node, not a bad certificate.  With one subject
    for every CA, OpenSSL found the trusted CA by the issuer's name and then failed on
    the signature ("certificate signature failure")."""
    ours, theirs = certs.init_ca(tmp_path / "ours"), certs.init_ca(tmp_path / "theirs")
    assert _subject(ours.cert) != _subject(theirs.cert)
    pki = Pki(tmp_path / "ours", tmp_path / "theirs")
    made = certs.issue(pki.other_ca, "master", "master")
    stranger = TLSConfig(cert=made.cert, key=made.key, ca=pki.ca / "ca.crt")
    async with run_node(pki.node_args(), client_tls=pki.master()) as node:
        assert await raw_handshake(node, stranger.client_context()) == b""
        await eventually(lambda: "tls.handshake_failed" in node.log_text())
        assert re.search(r"tls.handshake_failed .*reason=\"unknown CA", node.log_text())
        assert "bad certificate" not in node.log_text()


def _subject(path: Path) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes()).subject.rfc4514_string()


async def test_a_reload_with_a_key_that_is_not_the_certificates_keeps_the_old_one(
    pki: Pki, tmp_path: Path
) -> None:
    """A half-done rotation (the new certificate in place, its key not yet) is refused at
    SIGHUP: new connections are still served with the old certificate; once the key is in
    place, another SIGHUP serves the new one."""
    served = tmp_path / "served"
    served.mkdir()
    first = certs.issue(pki.ca, "node1", "node", addresses=("127.0.0.1",), force=True)
    (served / "n.crt").write_bytes(first.cert.read_bytes())
    (served / "n.key").write_bytes(first.key.read_bytes())
    served_files = certs.Issued(cert=served / "n.crt", key=served / "n.key")
    async with run_node(tls_args(served_files, pki.ca), client_tls=pki.master()) as node:
        old = await served_certificate(node)
        rotated = certs.issue(pki.ca, "node1", "node", addresses=("127.0.0.1",), force=True)
        (served / "n.crt").write_bytes(rotated.cert.read_bytes())  # its key not yet
        node.signal(signal.SIGHUP)
        await eventually(lambda: "tls.reload_failed" in node.log_text())
        assert "is not the key of --tls-cert" in node.log_text()
        assert await served_certificate(node) == old
        async with node.client(name="node1") as client:
            assert (await client.identify())["pid"] == node.pid
        (served / "n.key").write_bytes(rotated.key.read_bytes())
        node.signal(signal.SIGHUP)
        await eventually(lambda: "tls.reloaded" in node.log_text())
        assert await served_certificate(node) == ssl.PEM_cert_to_DER_cert(rotated.cert.read_text())
