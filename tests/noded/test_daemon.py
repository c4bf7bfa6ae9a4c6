"""The daemon process itself: start-up checks, limits of the OS, logs."""

from __future__ import annotations

import asyncio
import re
import resource
import socket
from pathlib import Path

import orjson
import pytest

from masterd.local import LocalNodeError, free_port
from tests.helpers import ROOT, run_node, run_noded


def soft_nofile(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


async def test_startup_raises_the_open_files_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1024:
        pytest.skip(f"hard RLIMIT_NOFILE is only {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the daemon inherits this
    try:
        async with run_node() as node:
            assert soft_nofile(node.pid) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_functions_module_that_does_not_import_stops_the_start() -> None:
    refused = "cannot start: cannot import function module 'no_such_mod': not found in"
    with pytest.raises(LocalNodeError, match=refused):
        async with run_node(["--functions", "no_such_mod"]):
            pass


@pytest.mark.parametrize("address", ["0.0.0.0", "192.0.2.1", "::", "node1.example"])
def test_no_tls_and_no_insecure_refuses_a_non_loopback_address(address: str) -> None:
    done = run_noded("--bind", address, "--port", "1")
    assert done.returncode == 2
    assert "--insecure" in done.stderr and "refusing" in done.stderr


def test_bad_limits_are_refused_at_start() -> None:
    done = run_noded("--max-functions", "0")
    assert done.returncode == 2 and "max_functions must be > 0" in done.stderr


async def test_one_log_line_per_event_with_the_fnc_id() -> None:
    async with run_node() as node, node.client() as client:
        ok = await client.start_function("echo", {"value": 1}, timeout=10)
        bad = await client.start_function("fail", {"message": "x"}, timeout=10)
        await asyncio.sleep(0.1)
        lines = node.log_text().splitlines()
    for state, outcome in ((ok, "outcome=ok"), (bad, "outcome=RuntimeError")):
        mine = [line for line in lines if f"fnc_id={state.fnc_id}" in line]
        assert [line.split()[2] for line in mine] == ["call.start", "call.finish"]
        assert outcome in mine[1] and "duration_s=" in mine[1]


async def test_json_logs() -> None:
    async with run_node(["--log-format", "json"]) as node, node.client() as client:
        state = await client.start_function("echo", {"value": 1}, timeout=10)
        await asyncio.sleep(0.1)
        entries = [orjson.loads(line) for line in node.log_text().splitlines()]
    finish = [e for e in entries if e["event"] == "call.finish"]
    assert finish[0]["fnc_id"] == state.fnc_id
    assert finish[0]["fn_name"] == "echo" and finish[0]["outcome"] == "ok"


async def test_a_second_daemon_on_the_same_state_directory_is_refused(tmp_path: Path) -> None:
    async with run_node(workdir=tmp_path) as first:
        second = await asyncio.to_thread(
            run_noded, "--port", str(free_port()), "--state-dir", str(first.state_dir)
        )
        assert second.returncode == 1 and "Traceback" not in second.stderr
        in_use = f"the state directory {first.state_dir} is in use by another ganeti-noded"
        assert f"{in_use} (pid {first.pid})" in second.stderr
        async with first.client() as client:  # the first serves on, its uuid its own
            assert (await client.identify())["pid"] == first.pid
            uuid = (await client.identify())["uuid"]
            assert (await client.start_function("echo", {"value": 1}, timeout=10)).result == 1
        first.proc.kill()  # a crash: the kernel lets the lock go with the process
        await first.wait_exit(10)
    async with run_node(workdir=tmp_path) as after, after.client() as client:
        assert (await client.identify())["uuid"] == uuid


def test_a_log_file_that_cannot_be_opened_is_named_at_start(tmp_path: Path) -> None:
    done = run_noded("--log-file", str(tmp_path / "no-such-dir" / "noded.log"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"--log-file {tmp_path / 'no-such-dir' / 'noded.log'}: No such file" in done.stderr


def test_a_port_in_use_is_named_with_the_flag_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_noded("--port", str(port), "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"cannot start: 127.0.0.1:{port}: address already in use" in done.stderr
    assert "--port" in done.stderr


def test_a_missing_certificate_file_is_named_at_start(tmp_path: Path) -> None:
    files = ["--tls-cert", str(tmp_path / "node.crt"), "--tls-key", str(tmp_path / "node.key"),
             "--tls-ca", str(tmp_path / "ca.crt")]  # fmt: skip
    done = run_noded(*files)
    assert done.returncode == 2
    assert f"--tls-cert {tmp_path / 'node.crt'}: no such file" in done.stderr
    assert "Traceback" not in done.stderr


async def test_ready_says_whether_tls_is_on() -> None:
    async with run_node() as node:
        assert "daemon.ready" in node.log_text() and " tls=false tls_ca=null " in node.log_text()


def test_every_flag_of_the_help_is_in_the_operations_flag_table() -> None:
    help_text = run_noded("--help").stdout
    flags = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    doc = (ROOT / "doc" / "operations.md").read_text()
    table = doc[doc.index("## Flags") :]
    assert len(flags) > 30
    assert sorted(flag for flag in flags if f"| `{flag}" not in table) == []


def test_the_example_config_is_a_valid_tls_node() -> None:
    from noded.cli import parse_config

    _, config = parse_config(["--config", str(ROOT / "doc" / "examples" / "noded.toml")])
    assert config.tls and config.bind == "0.0.0.0" and config.max_output_bytes == 1 << 20


def write_site(root: Path) -> Path:
    (root / "mysite").mkdir(parents=True)
    (root / "mysite" / "__init__.py").write_text("")
    (root / "mysite" / "functions.py").write_text(
        "from noded import function\n\n\n@function\ndef hello(who: str) -> str:\n"
        "    return f'hello, {who}'\n"
    )
    return root


@pytest.mark.parametrize("spawn", ["fork", "exec"])
async def test_function_modules_load_from_the_functions_path(tmp_path: Path, spawn: str) -> None:
    site = write_site(tmp_path / "site")
    args = ["--functions", "mysite.functions", "--functions-path", str(site), "--spawn", spawn]
    async with run_node(args) as node, node.client() as client:
        state = await client.start_function("hello", {"who": "operator"}, timeout=10)
    assert state.result == "hello, operator"


async def test_the_functions_path_in_the_config_file(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site")
    config = tmp_path / "noded.toml"
    config.write_text(f'functions-path = ["{site}"]\n')
    args = ["--config", str(config), "--functions", "mysite.functions"]
    async with run_node(args) as node, node.client() as client:
        assert "hello" in await client.describe_functions()


def test_a_function_module_not_found_says_where_it_looked() -> None:
    done = run_noded("--functions", "no_such_site.functions")
    assert done.returncode == 1
    assert "cannot import function module 'no_such_site': not found in" in done.stderr
    assert "--functions-path DIR" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("def f(:\n", "SyntaxError: invalid syntax (broken.py, line 1)"),
        ("import no_such_dependency\n",
         "ModuleNotFoundError: No module named 'no_such_dependency' ({path}, line 1)"),
        ("\nraise RuntimeError('no config file')\n",
         "RuntimeError: no config file ({path}, line 2)"),
        # the user's function, not noded/registry.py or rpc_client/declarations.py
        ("from noded import function\n\n@function\ndef f(x: set) -> int:\n    return 1\n",
         "TypeError: f(x): annotation <class 'set'> has no JSON form (use int, float, str, "
         "bool, list, dict, X | None, list[X], dict[str, X], or none) ({path}, line 3)"),
    ],
)  # fmt: skip
def test_a_function_module_that_fails_to_import_is_named_with_what_it_raised(
    tmp_path: Path, source: str, said: str
) -> None:
    """Before, a syntax error or the module's own exception came as the daemon's traceback,
    and a missing dependency as the function module itself not being found."""
    (tmp_path / "broken.py").write_text(source)
    done = run_noded("--functions-path", str(tmp_path), "--functions", "broken")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    expected = said.format(path=tmp_path / "broken.py")
    assert f"cannot start: function module 'broken' cannot be imported: {expected}" in done.stderr
    assert "--functions-path" not in done.stderr  # it was found
