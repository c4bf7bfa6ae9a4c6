"""Who this daemon is: a uuid kept in the state directory, the boot id, the host name."""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noded.version import __version__

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
