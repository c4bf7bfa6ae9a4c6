"""Who this daemon is: a uuid kept in the state directory, the boot id, the host name."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noded.config import NodedConfig
from noded.version import __version__
from rpc_client import tls

_UUID_FILE = "node-uuid"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Identity:
    """The answer to Identify."""

    name: str
    uuid: str
    pid: int
    version: str
    started: float
    boot_id: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "pid": self.pid,
            "version": self.version,
            "started": self.started,
            "boot_id": self.boot_id,
        }


def load_identity(state_dir: Path, name: str | None) -> Identity:
    """This daemon's identity; creates the state directory and the uuid on first start."""
    return Identity(
        name=name or socket.gethostname(),
        uuid=load_or_create_uuid(state_dir),
        pid=os.getpid(),
        version=__version__,
        started=time.time(),
        boot_id=_read_boot_id(),
    )


def load_or_create_uuid(state_dir: Path) -> str:
    """The node uuid from ``state_dir``, made once (written atomically) and kept."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / _UUID_FILE
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise ValueError(f"{path} does not hold a uuid; remove it to make a new one") from exc
    new = str(uuid.uuid4())
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(new + "\n")
    os.replace(tmp, path)
    return new


def _read_boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def name_under_tls(config: NodedConfig) -> str | None:
    """The node's name (``--name``) as its certificate has it: with a node certificate
    (``rpc-cli certs issue --node NAME``) and no ``--name``, the certificate's node name,
    not the host name; ``ValueError`` (a usage error) for a ``--name`` that is not it when
    the node registers with ganeti-masterd (``--master``), which takes a node only under
    its certificate's name.  Otherwise the name given (None: the host name)."""
    if config.tls_cert is None:
        return config.name
    cn, role = tls.file_identity(config.tls_cert)
    if cn is None or role != tls.NODE_ROLE:
        return config.name
    if config.name is None:
        return cn
    if config.name != cn and config.masters:
        raise ValueError(
            f"--name {config.name} is not the node name in --tls-cert {config.tls_cert} "
            f"({cn}): ganeti-masterd takes a node only as its certificate's node\n"
            f"leave out --name (it defaults to {cn}), or give this node a certificate of "
            f"its own: rpc-cli certs issue CA_DIR {config.name} --node"
        )
    return config.name
