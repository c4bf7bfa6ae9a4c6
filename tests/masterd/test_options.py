"""The library's options objects (masterd.options): checked when made, typed end to end
through Cluster, blocking.Cluster and call_many, and the keywords they replace still
honoured for one release, with a DeprecationWarning naming the caller's line."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import dataclasses
import math
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from masterd import CallOptions, Cluster, RetryPolicy, Rollout, blocking, follow, wait_for_call
from masterd.local import LocalNode
from masterd.master_client import MasterClient
from masterd.node import Node
from rpc_client.errors import FunctionFailed, Skipped
from tests.helpers import NodeFactory, named_test_nodes
from tests.masterd.daemon.running import run_masterd
from tests.masterd.jobs.fleet import register

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalNode]]:
    """``good`` answers at once, ``bad`` fails at once."""
    with named_test_nodes(tmp_path_factory, {"good": {}, "bad": {"TEST_FAIL": "1"}}) as started:
        yield started


def nodes_of(daemons: dict[str, LocalNode], *pairs: tuple[str, str]) -> list[Node]:
    """(node name, daemon) pairs as nodes: several nodes may share a daemon."""
    return [Node(name, "127.0.0.1", daemons[daemon].port) for name, daemon in pairs]


@contextlib.asynccontextmanager
async def cluster_of(
    daemons: dict[str, LocalNode], *pairs: tuple[str, str]
) -> AsyncIterator[Cluster]:
    async with Cluster(nodes_of(daemons, *pairs)) as cluster:
        yield cluster


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- made and checked --------------------------------------------------------------

MISUSE: list[tuple[Callable[..., object], dict[str, Any], type[Exception], str]] = [
    (Rollout, {"window": 0}, ValueError, "window must be >= 1 or None, got 0"),
    (Rollout, {"window": -3}, ValueError, "window must be >= 1 or None, got -3"),
    (Rollout, {"window": "3"}, TypeError, "window must be an int or None, got str '3'"),
    (Rollout, {"window": True}, TypeError, "window must be an int or None, got bool"),
    (Rollout, {"canary": -1}, ValueError, "canary must be >= 0, got -1"),
    (Rollout, {"canary": None}, TypeError, "canary must be an int, got NoneType"),
    (Rollout, {"max_failures": -1}, ValueError, "max_failures must be >= 0 or None, got -1"),
    (Rollout, {"max_failures": 1.5}, TypeError, "max_failures must be an int or None"),
    (Rollout, {"windw": 2}, TypeError, "unexpected keyword argument 'windw'"),
    (CallOptions, {"wait_s": 0}, ValueError, "wait_s must be > 0, got 0"),
    (CallOptions, {"wait_s": "10"}, TypeError, "wait_s must be a number of seconds"),
    (CallOptions, {"wait_s": math.inf}, ValueError, "wait_s must be finite"),
    (CallOptions, {"abort_after_s": -1}, ValueError, "abort_after_s must be > 0, got -1"),
    (CallOptions, {"abort_after_s": math.nan}, ValueError, "abort_after_s must be finite"),
    (CallOptions, {"retry": 3}, TypeError, "retry must be a RetryPolicy, got int"),
    (CallOptions, {"abort_after": 1, "abort_after_s": 1}, TypeError, "abort_after_s only"),
    (RetryPolicy, {"first_backoff_s": 0}, ValueError, "first_backoff_s must be > 0"),
    (RetryPolicy, {"first_backoff_s": 3, "max_backoff_s": 1}, ValueError,
     "max_backoff_s (1) must be >= first_backoff_s (3)"),
    (RetryPolicy, {"attempts_without_deadline": 0}, ValueError,
     "attempts_without_deadline must be >= 1, got 0"),
    # an int past a float's range: not an OverflowError that names nothing
    (CallOptions, {"wait_s": 10**400}, ValueError, "wait_s must be a number of seconds a float"),
    (CallOptions, {"abort_after_s": 10**400}, ValueError, "abort_after_s must be a number of"),
    (CallOptions, {"wait_s": -(10**400)}, ValueError, "wait_s must be a number of seconds"),
    (RetryPolicy, {"first_backoff_s": 10**400, "max_backoff_s": 10**401}, ValueError,
     "first_backoff_s must be a number of seconds a float can hold"),
    (RetryPolicy, {"max_backoff_s": 10**400}, ValueError, "max_backoff_s must be a number of"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "fields", "error", "message"), MISUSE)
def test_misuse_is_refused_when_made_naming_the_field(
    make: Callable[..., object], fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        make(**fields)
    assert message in str(raised.value)


@pytest.mark.parametrize("make", [CallOptions, Rollout, RetryPolicy])
def test_fields_are_keyword_only_and_frozen(make: Callable[..., object]) -> None:
    with pytest.raises(TypeError, match="positional"):
        make(1)
    made = make()
    field = dataclasses.fields(made)[0].name  # type: ignore[arg-type]  # a dataclass
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, field, 2)


def test_abort_after_is_the_old_name_of_abort_after_s() -> None:
    with pytest.warns(DeprecationWarning, match="use abort_after_s") as record:
        options = CallOptions(abort_after=5)
    assert options.abort_after_s == 5
    assert record[0].filename == __file__
    with no_warnings():
        assert CallOptions(abort_after_s=5) == options


async def test_more_canaries_than_nodes_is_refused_before_any_node_is_asked(
    daemons: dict[str, LocalNode], tmp_path: Path
) -> None:
    count = tmp_path / "count"
    async with cluster_of(daemons, ("n1", "good"), ("n2", "good")) as cluster:
        with pytest.raises(ValueError, match="canary=3 is more than the fan-out's 2 nodes"):
            await cluster.gather("count_run", {"path": str(count)}, 30,
                                 rollout=Rollout(canary=3))  # fmt: skip
        summary = await cluster.gather("count_run", {"path": str(count)}, 30,
                                       rollout=Rollout(canary=2))  # fmt: skip
    assert summary.names("ok") == ["n1", "n2"]
    assert count.read_text().count("run") == 2  # the refused fan-out asked no node


def test_rpc_cli_refuses_more_canaries_than_nodes_in_one_line(
    daemons: dict[str, LocalNode], tmp_path: Path
) -> None:
    nodes = tmp_path / "nodes.toml"
    nodes.write_text("".join(f'[[node]]\nname = "{name}"\naddress = "127.0.0.1"\nport = '
                             f"{daemons['good'].port}\n" for name in ("n1", "n2")))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "masterd.cli", "--nodes", str(nodes), "gather", "echo",
         '{"value": 1}', "--canary", "3"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "canary=3 is more than the fan-out's 2 nodes" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# --- the objects, and the old keywords ---------------------------------------------


async def test_options_and_rollout_are_honoured_without_a_warning(
    daemons: dict[str, LocalNode],
) -> None:
    pairs = [("first", "bad"), ("n1", "good"), ("n2", "good")]
    async with cluster_of(daemons, *pairs) as cluster:
        with no_warnings():
            summary = await cluster.gather(
                "node_behaviour", {}, 30,
                options=CallOptions(wait_s=1, abort_after_s=20),
                rollout=Rollout(window=1, canary=1),
            )  # fmt: skip
            value = await cluster.call_function("n1", "add", {"a": 1, "b": 2}, 30,
                                                options=CallOptions(wait_s=1))  # fmt: skip
    assert isinstance(summary.results["first"].error, FunctionFailed)
    for name in ("n1", "n2"):  # the canary failed: the rest were not started
        assert isinstance(summary.results[name].error, Skipped)
    assert value == 3


async def test_the_old_keywords_still_work_with_a_warning_at_the_callers_line(
    daemons: dict[str, LocalNode],
) -> None:
    pairs = [("first", "bad"), ("n1", "good")]
    async with cluster_of(daemons, *pairs) as cluster:
        with pytest.warns(DeprecationWarning) as record:
            summary = await cluster.gather("node_behaviour", {}, 30, canary=1, wait_s=1)
        with pytest.warns(DeprecationWarning, match=r"call_function\(wait_s=\.\.\.\)"):
            value = await cluster.call_function("n1", "add", {"a": 1, "b": 2}, 30, wait_s=1)
    assert isinstance(summary.results["n1"].error, Skipped)  # canary=1 was honoured
    assert value == 3
    message = str(record[0].message)
    assert message == (
        "call_many(canary=..., wait_s=...) is deprecated and goes in the next release: "
        "pass options=CallOptions(wait_s=...) and rollout=Rollout(canary=...)"
    )
    assert record[0].filename == __file__


async def test_follow_and_wait_for_call_take_the_options_too(
    daemons: dict[str, LocalNode],
) -> None:
    wait_1_s = CallOptions(wait_s=1)
    refused: dict[str, Any] = {"abort_after": 1.0}  # a start's, not a wait's
    async with cluster_of(daemons, ("n1", "good")) as cluster:
        client = cluster.client("n1")
        state = await client.start_function("echo", {"value": 7}, timeout=0)
        with no_warnings():
            events = [e async for e in follow(client, state.fnc_id, 0, 10, options=wait_1_s)]
            value = await wait_for_call(client, state.fnc_id, 10, options=wait_1_s)
        with pytest.warns(DeprecationWarning, match=r"follow\(wait_s=\.\.\.\)") as record:
            again = [e async for e in follow(client, state.fnc_id, 0, 10, wait_s=1)]
        with pytest.warns(DeprecationWarning, match=r"wait_for_call\(retry=\.\.\.\)"):
            assert await wait_for_call(client, state.fnc_id, 10, retry=RetryPolicy()) == 7
        with pytest.raises(TypeError, match="unexpected keyword argument 'abort_after'"):
            await wait_for_call(client, state.fnc_id, 10, **refused)

        def follow_blocking() -> str:
            with blocking.Cluster(cluster.nodes) as sync:
                with pytest.warns(DeprecationWarning, match=r"follow\(wait_s=") as warned:
                    list(sync.follow("n1", state.fnc_id, 0, 10, wait_s=1))
                with no_warnings():
                    list(sync.follow("n1", state.fnc_id, 0, 10, options=wait_1_s))
            return warned[0].filename

        blocking_filename = await asyncio.to_thread(follow_blocking)
    assert value == 7 and events == again
    assert record[0].filename == blocking_filename == __file__


def test_the_blocking_cluster_warns_at_the_callers_line_too(
    daemons: dict[str, LocalNode],
) -> None:
    with blocking.Cluster(nodes_of(daemons, ("first", "bad"), ("n1", "good"))) as cluster:
        with pytest.warns(DeprecationWarning, match=r"concurrency=\.\.\.") as record:
            called = cluster.call_many("node_behaviour", {}, 30, concurrency=1, canary=1)
            results = {result.node: result for result in called}
        with no_warnings():
            summary = cluster.gather("node_behaviour", {}, 30, rollout=Rollout(canary=1))
    assert isinstance(results["n1"].error, Skipped)
    assert isinstance(summary.results["n1"].error, Skipped)
    assert record[0].filename == __file__


async def test_mixed_or_unknown_keywords_are_refused_with_a_clear_message(
    daemons: dict[str, LocalNode],
) -> None:
    old: dict[str, Any] = {"window": 2}
    typo: dict[str, Any] = {"windw": 2}
    async with cluster_of(daemons, ("n1", "good")) as cluster:
        with pytest.raises(TypeError, match=r"window given both in rollout= and as keywords"):
            await cluster.gather("echo", {"value": 1}, 10, rollout=Rollout(), **old)
        with pytest.raises(TypeError, match="give window only"):
            await cluster.gather("echo", {"value": 1}, 10, concurrency=1, **old)
        with pytest.raises(TypeError, match="unexpected keyword argument 'windw'"):
            await cluster.gather("echo", {"value": 1}, 10, **typo)
        with pytest.raises(TypeError, match=r"options must be a CallOptions.*got Rollout"):
            misuse: Any = Rollout()
            await cluster.gather("echo", {"value": 1}, 10, options=misuse)
        with pytest.raises(
            TypeError, match=r"call_function\(\) got an unexpected keyword argument 'window'"
        ):
            await cluster.call_function("n1", "echo", {"value": 1}, 10, **old)


async def test_submit_job_takes_a_rollout_and_warns_on_the_old_keywords(
    tmp_path: Path, make_node: NodeFactory
) -> None:
    async with run_masterd(workdir=tmp_path / "m") as masterd:
        await register(masterd, await make_node("first", fail=True), "first", [])
        await register(masterd, await make_node("n1"), "n1", [])
        nodes = ["first", "n1"]
        async with MasterClient("127.0.0.1", masterd.port) as client:
            with no_warnings():
                job = await client.submit_job("node_behaviour", nodes=nodes,
                                              rollout=Rollout(canary=1))  # fmt: skip
            new_way = {item.node: item.outcome async for item in client.follow_job(job.job_id)}

        unknown: dict[str, Any] = {"concurrency": 1}  # a fan-out's, not a job's

        def operator() -> tuple[str, dict[str, str]]:
            with blocking.MasterClient("127.0.0.1", masterd.port) as sync:
                with pytest.warns(DeprecationWarning, match=r"submit_job\(canary=") as record:
                    job = sync.submit_job("node_behaviour", nodes=nodes, canary=1)
                with pytest.raises(TypeError, match="canary given both in rollout="):
                    sync.submit_job("node_behaviour", rollout=Rollout(), canary=1)
                with pytest.raises(TypeError, match="unexpected keyword argument 'concurrency'"):
                    sync.submit_job("node_behaviour", **unknown)
                return record[0].filename, {i.node: i.outcome for i in sync.follow_job(job.job_id)}

        filename, old_way = await asyncio.to_thread(operator)
    assert new_way == old_way == {"first": "failed", "n1": "skipped"}
    assert filename == __file__


# --- documented ---

OLD_KEYWORDS = {"wait_s", "abort_after", "retry", "window", "canary", "max_failures",
                "concurrency"}  # fmt: skip
NEW_WAY = {"call_function", "call_many", "gather", "follow", "wait_for_call", "CallOptions"}


def test_doc_master_md_shows_the_objects_not_the_old_keywords() -> None:
    """Every Python example of doc/master.md compiles, and none passes an old keyword
    to the calls, fan-outs or CallOptions (resume keeps its keywords)."""
    text = (ROOT / "doc" / "master.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 5
    seen = set()
    for block in blocks:
        tree = compile(block, "doc/master.md", "exec",
                       flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # fmt: skip
        for call in (node for node in ast.walk(tree) if isinstance(node, ast.Call)):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in NEW_WAY:
                seen.add(name)
                old = {k.arg for k in call.keywords} & (
                    OLD_KEYWORDS - {"wait_s", "retry"} if name == "CallOptions" else OLD_KEYWORDS
                )
                assert not old, f"doc/master.md: {ast.unparse(call)} passes {old}"
    assert seen == NEW_WAY


# --- typed --------------------------------------------------------------------------

TYPED = """
from __future__ import annotations
from masterd import CallOptions, Cluster, Rollout, blocking

async def good(cluster: Cluster, sync: blocking.Cluster) -> None:
    await cluster.gather("echo", {}, 10, options=CallOptions(wait_s=1), rollout=Rollout(canary=1))
    sync.call_many("echo", {}, 10, nodes=["n1"], rollout=Rollout(window=2))
    await cluster.call_function("n1", "echo", {}, 10, options=CallOptions(abort_after_s=5))

async def bad(cluster: Cluster, sync: blocking.Cluster) -> None:
    Rollout(window="3")  # line 11
    Rollout(3)
    await cluster.gather("echo", {}, 10, options=Rollout(window=2))
    await cluster.gather("echo", {}, 10, windw=2)
    sync.call_many("echo", {}, 10, rollout=CallOptions())
    await cluster.call_function("n1", "echo", {}, 10, options=CallOptions(abort_after_s="1"))
"""


@pytest.mark.slow
def test_mypy_checks_the_options_through_cluster_and_blocking(tmp_path: Path) -> None:
    source = tmp_path / "uses_options.py"
    source.write_text(textwrap.dedent(TYPED))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "", "--follow-imports", "silent",
         "--cache-dir", str(tmp_path / "cache"), "--python-version", "3.11", str(source)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert sorted({int(line.split(":")[1]) for line in lines}) == list(range(11, 17)), done.stdout
