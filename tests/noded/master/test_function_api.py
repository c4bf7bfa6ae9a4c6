"""emit and call_master as a function sees them: checked at once, usable outside a
function process (unit tests of functions), and the same under --spawn exec."""

from __future__ import annotations

from pathlib import Path

import pytest

from noded import call_master, emit
from rpc_client.errors import NodeUnreachable
from tests.masterd.daemon.running import run_masterd
from tests.noded.master.running import node_with_master, run_call, wait_events, wait_state


def test_emit_outside_a_function_process_does_nothing() -> None:
    emit("disk.replacing", {"disk": "sdb"})


@pytest.mark.parametrize(
    ("kind", "data", "error"),
    [
        ("", None, ValueError),
        ("x" * 201, None, ValueError),
        ("ok", {1, 2}, TypeError),
        ("ok", "x" * 300_000, ValueError),
    ],
)
def test_emit_refuses_what_cannot_be_sent(kind: str, data: object, error: type) -> None:
    with pytest.raises(error):
        emit(kind, data)


def test_call_master_outside_a_node_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODED_MASTER_SOCKET", raising=False)
    with pytest.raises(NodeUnreachable, match="no master"):
        call_master("anything")
    with pytest.raises(ValueError):
        call_master("anything", timeout=0)


async def test_emit_and_call_master_under_spawn_exec(tmp_path: Path) -> None:
    async with (
        run_masterd(["--heartbeat-s", "0.5"], workdir=tmp_path / "m") as masterd,
        node_with_master([masterd.address], tmp_path / "n", "--spawn", "exec") as node,
    ):
        await wait_state(masterd, "node-a", "alive")
        state = await run_call(node, "emit_events", {"count": 2, "kind": "exec.event"})
        arrived = await wait_events(masterd, 2, ["exec.event"])
        assert {e["fnc_id"] for e in arrived} == {state.fnc_id}
        answer = (await run_call(node, "ask_master", {"command": "x"})).result
        assert answer["raised"] in ("UnknownProcedure", "UnknownCommand"), answer
