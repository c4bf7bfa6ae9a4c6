"""Nodes: who they are, where they listen, and the nodes file (``nodes.toml``)."""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpc_client.protocol import DEFAULT_PORT
from rpc_client.tls import TLSConfig


@dataclass(frozen=True)
class Node:
    """A node of the cluster: its name, its daemon's address, and optionally its uuid."""

    name: str
    address: str
    port: int = DEFAULT_PORT
    uuid: str | None = None
    #: the master's certificate, key and the cluster CA, for mutual TLS
    tls: TLSConfig | None = None
    #: what an operator picks nodes by (``rack1``, ``db``): Cluster.select, --labels
    labels: tuple[str, ...] = ()


def load_nodes(path: Path | str) -> list[Node]:
    """Read a nodes file::

        [[node]]
        name = "node1"
        address = "192.0.2.11"
        port = 1811          # optional
        uuid = "..."         # optional: checked against the node's Identify
        tls = { cert = "...", key = "...", ca = "..." }   # optional, per node
        labels = ["rack1", "db"]                          # optional

    A top-level ``[tls]`` table (cert, key, ca, verify_name, server_name) applies to
    every node without its own.  Relative paths are relative to the file.  Raises
    ``ValueError`` saying what is wrong with the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the nodes file {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not TOML: {exc}") from exc
    entries = data.get("node")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[node]] entries")
    default_tls = _tls_from(data.get("tls"), path, f"{path}: [tls]")
    nodes = [
        _node_from(entry, f"{path}: node #{n}", path, default_tls)
        for n, entry in enumerate(entries, 1)
    ]
    _check_unique(nodes, path)
    return nodes


def _tls_from(value: Any, path: Path, where: str) -> TLSConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table of cert, key and ca")
    resolved = {
        k: str(path.parent / v) if k in ("cert", "key", "ca") else v for k, v in value.items()
    }
    return TLSConfig.from_mapping(resolved, where)


def _node_from(entry: Any, where: str, path: Path, default_tls: TLSConfig | None) -> Node:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a table")
    unknown = set(entry) - {"name", "address", "port", "uuid", "tls", "labels"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    name, address = entry.get("name"), entry.get("address")
    port, uuid = entry.get("port", DEFAULT_PORT), entry.get("uuid")
    if not isinstance(name, str) or not name or not isinstance(address, str) or not address:
        raise ValueError(f"{where}: 'name' and 'address' must be non-empty strings")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{where} ({name}): 'port' must be 1..65535")
    if uuid is not None and not isinstance(uuid, str):
        raise ValueError(f"{where} ({name}): 'uuid' must be a string")
    labels = entry.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(v, str) and v for v in labels):
        raise ValueError(f"{where} ({name}): 'labels' must be a list of non-empty strings")
    tls = _tls_from(entry.get("tls"), path, f"{where} ({name}): tls") or default_tls
    return Node(name=name, address=address, port=port, uuid=uuid, tls=tls, labels=tuple(labels))


def _check_unique(nodes: list[Node], path: Path) -> None:
    for attribute in ("name", "uuid"):
        counts = Counter(getattr(n, attribute) for n in nodes)
        duplicates = sorted(v for v, count in counts.items() if count > 1 and v is not None)
        if duplicates:
            raise ValueError(f"{path}: duplicate node {attribute}s: {', '.join(duplicates)}")
