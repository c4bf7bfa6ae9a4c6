"""Cgroup v2 directories for tests: made under the unified hierarchy, removed after."""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from noded.process.cgroups import CgroupTree, remove_when_empty

UNIFIED = Path("/sys/fs/cgroup/unified")


def unified_root() -> Path:
    return UNIFIED if (UNIFIED / "cgroup.procs").exists() else Path("/sys/fs/cgroup")


@contextlib.contextmanager
def made_cgroup() -> Iterator[Path]:
    """A fresh cgroup v2 directory with ``cgroup.kill``, removed with all under it after;
    skips the test where none can be made."""
    root = unified_root() / f"noded-test-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup v2 directory here: {exc}")
    if not (root / "cgroup.kill").exists():
        root.rmdir()
        pytest.skip("this kernel's cgroup v2 has no cgroup.kill")
    try:
        yield root
    finally:
        remove_cgroups(root)


def remove_cgroups(path: Path) -> None:
    """Kill what runs under ``path`` and remove it, deepest first, each once empty."""
    for child in [*sorted(path.rglob("*"), reverse=True), path]:
        if child.is_dir():
            tree = CgroupTree(child)
            tree.signal(signal.SIGKILL)
            remove_when_empty([tree])


def call_cgroups(root: Path) -> list[Path]:
    """The call cgroups left under ``root`` (``noded-<pid>/call-<pid>``)."""
    return sorted(root.glob("noded-*/call-*"))


@pytest.fixture(params=["cgroup", "process-tree"])
def isolation(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The daemon's flags for each way of finding a call's processes."""
    if request.param == "process-tree":
        yield ["--cgroup-root", "none"]
        return
    with made_cgroup() as root:
        yield ["--cgroup-root", str(root)]
