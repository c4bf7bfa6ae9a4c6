"""ReloadFunctions and SIGHUP: a real daemon imports its function modules again, from
files edited on disk; running calls are untouched, a module that fails to import leaves
the old functions serving."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from masterd.local import LocalNode
from rpc_client.errors import UnknownFunction
from tests.helpers import eventually, run_node, zygotes

FUNCTIONS = """
import time

from noded import function
from sitefns.helper import VALUE


@function
def version() -> int:
    return VALUE


@function
def slow_version(seconds: float, ready_path: str) -> int:
    open(ready_path, "w").close()
    time.sleep(seconds)
    return VALUE
"""


def write_site(root: Path, value: str, *, extra: str = "") -> None:
    """The site's function package; each version a different size, so that Python never
    takes a stale .pyc for it (it compares the source's size and mtime)."""
    package = root / "sitefns"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(f"VALUE = {value}\n")
    (package / "functions.py").write_text(FUNCTIONS + extra)


async def rpc_cli(node: LocalNode, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "masterd.cli", "--node", node.address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_reload_runs_new_code_for_new_calls_only(tmp_path: Path, spawn: str) -> None:
    site = tmp_path / "site"
    write_site(site, "1")
    args = ["--functions", "sitefns.functions", "--functions-path", str(site), "--spawn", spawn]
    async with run_node(args, workdir=tmp_path / "node") as node, node.client() as client:
        ready = tmp_path / "ready"
        running = asyncio.create_task(client.start_function(
            "slow_version", {"seconds": 2, "ready_path": str(ready)}, timeout=20
        ))  # fmt: skip
        await eventually(ready.exists)  # the slow call runs the old code
        write_site(site, "22", extra="\n@function\ndef added() -> str:\n    return 'new'\n")
        status, out, err = await rpc_cli(node, "reload")
        assert status == 0, err
        assert '"added"' in out
        assert (await client.start_function("version", {}, timeout=10)).result == 22
        assert (await client.start_function("added", {}, timeout=10)).result == "new"
        assert (await running).result == 1  # the call running across the reload: old code
        if spawn == "fork":  # the old fork server leaves once its calls are done
            await eventually(lambda: len(zygotes(node.pid)) == 1)


async def test_a_module_that_fails_to_import_keeps_the_old_functions(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_site(site, "1")
    args = ["--functions", "sitefns.functions", "--functions-path", str(site)]
    async with run_node(args, workdir=tmp_path / "node") as node, node.client() as client:
        (site / "sitefns" / "helper.py").write_text("VALUE = (\n")  # a syntax error
        answer = await client.reload_functions()
        assert answer["reloaded"] is False
        assert "SyntaxError" in answer["error"] and "keep serving" in answer["error"]
        assert "version" in answer["functions"]
        assert (await client.start_function("version", {}, timeout=10)).result == 1
        status, _, err = await rpc_cli(node, "reload")
        assert status == 1 and "reload failed: SyntaxError" in err
        assert "functions.reload_failed" in node.log_text()
        # SIGHUP reloads too, once the module is right again
        write_site(site, "333")
        node.signal(signal.SIGHUP)
        await eventually(lambda: "functions.reloaded" in node.log_text())
        assert (await client.start_function("version", {}, timeout=10)).result == 333
        gone = FUNCTIONS.replace("def version() -> int:", "def renamed_version() -> int:")
        (site / "sitefns" / "functions.py").write_text(gone)  # a function that went away
        assert (await client.reload_functions())["reloaded"]
        with pytest.raises(UnknownFunction):
            await client.start_function("version", {}, timeout=10)
        assert len(zygotes(node.pid)) >= 1
