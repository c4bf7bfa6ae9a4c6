"""Nodes: who they are, where they listen, and the nodes file (``nodes.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpc_client.protocol import DEFAULT_PORT


@dataclass(frozen=True)
class Node:
    """A node of the cluster: its name, its daemon's address, and optionally its uuid."""

    name: str
    address: str
    port: int = DEFAULT_PORT
    uuid: str | None = None
    #: TLS settings (certificate, key, CA); taken once mutual TLS exists
    tls: Any = None


def load_nodes(path: Path | str) -> list[Node]:
    """Read a nodes file::

        [[node]]
        name = "node1"
        address = "192.0.2.11"
        port = 1811          # optional
        uuid = "..."         # optional: checked against the node's Identify

    Raises ``ValueError`` saying what is wrong with the file.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not TOML: {exc}") from exc
    entries = data.get("node")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[node]] entries")
    nodes = [_node_from(entry, f"{path}: node #{n}") for n, entry in enumerate(entries, 1)]
    _check_unique(nodes, path)
    return nodes


def _node_from(entry: Any, where: str) -> Node:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a table")
    unknown = set(entry) - {"name", "address", "port", "uuid"}
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
    return Node(name=name, address=address, port=port, uuid=uuid)


def _check_unique(nodes: list[Node], path: Path) -> None:
    for attribute in ("name", "uuid"):
        values = [getattr(n, attribute) for n in nodes if getattr(n, attribute) is not None]
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"{path}: duplicate node {attribute}s: {', '.join(duplicates)}")
