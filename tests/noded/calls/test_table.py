"""The call table alone: running, retained within its bounds, forgotten with a reason,
found by request_id."""

from __future__ import annotations

import asyncio

import pytest

from noded.calls.table import CallTable, FunctionCall, args_digest, request_key
from rpc_client.errors import RequestIdConflict, UnknownFunctionCall
from rpc_client.protocol import FncId

DAEMON = 4242


def call(number: int, request_id: str | None = None, record_bytes: int = 10) -> FunctionCall:
    fnc_id = FncId.new(DAEMON, 1000 + number, 1.0 + number)
    made = FunctionCall(
        fnc_id=str(fnc_id), fn_name="add", pid=1000 + number, started=1.0 + number,
        request_id=request_id, digest=args_digest("add", {"a": number}),
        request_key=request_key(request_id, None),
    )  # fmt: skip
    made.record_bytes = record_bytes
    return made


def table(**bounds: int) -> tuple[CallTable, list[FunctionCall], list[str]]:
    forgotten: list[FunctionCall] = []
    dropped: list[str] = []
    made = CallTable(
        daemon_pid=DAEMON, result_ttl_s=60, max_retained=bounds.get("max_retained", 3),
        max_retained_bytes=bounds.get("max_retained_bytes"),
        on_forget=forgotten.append, on_dropped=dropped.append,
    )  # fmt: skip
    return made, forgotten, dropped


def finish(calls: CallTable, one: FunctionCall, at: float = 100.0) -> None:
    one.finish(1, None)
    one.finished_at = at
    calls.retain(one)


def test_a_call_runs_then_is_retained() -> None:
    calls, forgotten, _ = table()
    one = call(1)
    calls.add(one)
    assert calls.running == {one.fnc_id: one} and len(calls) == 1
    finish(calls, one)
    assert not calls.running and list(calls.retained.values()) == [one]
    assert calls.get(FncId.parse(one.fnc_id)) is one and not forgotten


def test_the_oldest_result_goes_past_max_retained_and_says_why() -> None:
    calls, forgotten, dropped = table(max_retained=2)
    made = [call(n) for n in range(3)]
    for one in made:
        calls.add(one)
        finish(calls, one)
    assert forgotten == [made[0]] and dropped == ["max_retained"]
    with pytest.raises(UnknownFunctionCall, match="over the limit of 2 kept results"):
        calls.get(FncId.parse(made[0].fnc_id))


def test_the_newest_result_is_kept_whatever_its_size() -> None:
    calls, forgotten, dropped = table(max_retained_bytes=15)
    first, big = call(1, record_bytes=10), call(2, record_bytes=100)
    for one in (first, big):
        calls.add(one)
        finish(calls, one)
    assert list(calls.retained.values()) == [big] and calls.retained_bytes == 100
    assert forgotten == [first] and dropped == ["max_retained_bytes"]


def test_results_expire_after_their_ttl() -> None:
    calls, forgotten, _ = table()
    old, new = call(1), call(2)
    calls.add(old)
    finish(calls, old, at=100.0)
    calls.add(new)
    finish(calls, new, at=150.0)
    assert calls.expire(159.9) == 0
    assert calls.expire(160.0) == 1 and forgotten == [old]
    with pytest.raises(UnknownFunctionCall, match="expired"):
        calls.get(FncId.parse(old.fnc_id))


def test_a_request_id_finds_its_call_and_refuses_other_arguments() -> None:
    calls, _, _ = table()
    one = call(1, request_id="r1")
    calls.add(one)
    assert calls.by_request_id("r1", one.digest) is one
    with pytest.raises(RequestIdConflict):
        calls.by_request_id("r1", args_digest("add", {"a": 99}))
    assert calls.by_request_id("r2", one.digest) is None


def test_a_forgotten_calls_request_id_is_free_again() -> None:
    calls, _, _ = table(max_retained=1)
    first, second = call(1, request_id="r1"), call(2)
    for one in (first, second):
        calls.add(one)
        finish(calls, one)
    assert calls.by_request_id("r1", first.digest) is None


def test_an_unknown_call_of_an_earlier_daemon_says_it_was_lost() -> None:
    calls, _, _ = table()
    with pytest.raises(UnknownFunctionCall, match="earlier ganeti-noded process"):
        calls.get(FncId.new(DAEMON + 1, 5, 1.0))
    with pytest.raises(UnknownFunctionCall, match="never started here"):
        calls.get(FncId.new(DAEMON, 5, 1.0))


async def test_waiters_are_woken_by_the_result() -> None:
    one = call(1)
    waiting = asyncio.create_task(one.wait(20))
    await asyncio.sleep(0)
    assert not waiting.done()
    one.finish(3, None)
    await asyncio.wait_for(waiting, 5)
    assert one.state().result == 3
