"""Every row of the contract's request-error table, each followed by a healthy daemon."""

from __future__ import annotations

from typing import Any

import pytest

from masterd.local import LocalNode
from tests.helpers import put, run_node

pytestmark = pytest.mark.both_spawners

ECHO = {"fn_name": "echo", "fn_args": {"value": 1}}
GOOD_BUT_UNKNOWN_ID = "1:2:1763800000.123456:0123456789abcdef"


async def assert_error(
    node: LocalNode,
    path: str,
    body: Any = None,
    *,
    status: int,
    type_: str,
    raw: bytes | None = None,
    method: str = "PUT",
) -> dict[str, Any]:
    got_status, answer, headers = await put(node, path, body, raw=raw, method=method)
    assert (got_status, answer["error"]["type"]) == (status, type_), answer
    assert set(answer) == {"error"}
    assert isinstance(answer["error"]["message"], str) and len(answer["error"]["message"]) > 10
    assert headers["Content-Type"].startswith("application/json")
    # and the daemon keeps serving
    ok_status, who, _ = await put(node, "/Identify", {})
    assert ok_status == 200 and who["pid"] == node.pid
    return headers


BAD_BODIES: list[tuple[str, bytes]] = [
    ("a list", b"[1, 2]"),
    ("a string", b'"hello"'),
    ("a number", b"3"),
    ("not JSON", b"{fn_name: echo}"),
    ("truncated JSON", b'{"fn_name": "ec'),
    ("invalid UTF-8", b'{"fn_name": "\xff\xfe", "timeout": 1}'),
    ("NaN timeout", b'{"fn_name": "echo", "fn_args": {"value": 1}, "timeout": NaN}'),
    ("infinite timeout", b'{"fn_name": "echo", "fn_args": {"value": 1}, "timeout": 1e999}'),
]


@pytest.mark.parametrize(("what", "raw"), BAD_BODIES, ids=[what for what, _ in BAD_BODIES])
async def test_malformed_bodies_are_bad_request(node: LocalNode, what: str, raw: bytes) -> None:
    await assert_error(node, "/StartFunction", raw=raw, status=400, type_="BadRequest")


BAD_START_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("no fn_name", {"fn_args": {}, "timeout": 1}),
    ("fn_name not a string", {"fn_name": 3, "timeout": 1}),
    ("fn_args not an object", {**ECHO, "fn_args": [1], "timeout": 1}),
    ("no timeout", {**ECHO}),
    ("negative timeout", {**ECHO, "timeout": -0.5}),
    ("string timeout", {**ECHO, "timeout": "5"}),
    ("boolean timeout", {**ECHO, "timeout": True}),
    ("null timeout", {**ECHO, "timeout": None}),
    ("zero abort_after", {**ECHO, "timeout": 1, "abort_after": 0}),
    ("string abort_after", {**ECHO, "timeout": 1, "abort_after": "1"}),
    ("empty request_id", {**ECHO, "timeout": 1, "request_id": ""}),
    ("request_id with a space", {**ECHO, "timeout": 1, "request_id": "a b"}),
    ("request_id of 129 chars", {**ECHO, "timeout": 1, "request_id": "a" * 129}),
    ("numeric request_id", {**ECHO, "timeout": 1, "request_id": 5}),
]


@pytest.mark.parametrize(
    ("what", "body"), BAD_START_FIELDS, ids=[what for what, _ in BAD_START_FIELDS]
)
async def test_missing_or_mistyped_start_fields_are_bad_request(
    node: LocalNode, what: str, body: dict[str, Any]
) -> None:
    await assert_error(node, "/StartFunction", body, status=400, type_="BadRequest")


@pytest.fixture
def node(shared_node: LocalNode) -> LocalNode:
    return shared_node


async def test_request_id_of_128_chars_is_accepted(node: LocalNode) -> None:
    status, body, _ = await put(
        node, "/StartFunction", {**ECHO, "timeout": 5, "request_id": "a" * 128}
    )
    assert status == 200 and body["result"] == 1


BAD_FNC_IDS = [
    "",
    "abc",
    "0:2:1763800000.123456:0123456789abcdef",
    "1:2:1763800000.12345:0123456789abcdef",
    "1:2:1763800000.123456:0123456789ABCDEF",
    "1:2:1763800000.123456:0123456789abcde",
    "1:2:1763800000:0123456789abcdef",
    5,
]


@pytest.mark.parametrize("fnc_id", BAD_FNC_IDS)
@pytest.mark.parametrize("procedure", ["WaitForFunction", "AbortFunction"])
async def test_malformed_fnc_ids_are_bad_request(
    node: LocalNode, procedure: str, fnc_id: Any
) -> None:
    body = {"fnc_id": fnc_id, "timeout": 1}
    await assert_error(node, f"/{procedure}", body, status=400, type_="BadRequest")


async def test_wait_without_fnc_id_or_timeout_is_bad_request(node: LocalNode) -> None:
    await assert_error(node, "/WaitForFunction", {"timeout": 1}, status=400, type_="BadRequest")
    await assert_error(
        node, "/WaitForFunction", {"fnc_id": GOOD_BUT_UNKNOWN_ID}, status=400, type_="BadRequest"
    )


BAD_ARGS: list[tuple[str, str, dict[str, Any]]] = [
    ("missing", "add", {"a": 1}),
    ("unknown", "add", {"a": 1, "b": 2, "c": 3}),
    ("string for int", "add", {"a": "1", "b": 2}),
    ("float for int", "add", {"a": 1.5, "b": 2}),
    ("bool for int", "add", {"a": True, "b": 2}),
    ("bool for float", "sleep", {"seconds": False}),
    ("string for list", "typed", {"i": 1, "f": 1, "s": "", "b": True, "items": "x", "mapping": {}}),
    (
        "int for str|None",
        "typed",
        {"i": 1, "f": 1, "s": "", "b": True, "items": [], "mapping": {}, "maybe": 3},
    ),
]


@pytest.mark.parametrize(("what", "fn", "args"), BAD_ARGS, ids=[what for what, *_ in BAD_ARGS])
async def test_arguments_that_do_not_fit_are_invalid_arguments(
    node: LocalNode, what: str, fn: str, args: dict[str, Any]
) -> None:
    body = {"fn_name": fn, "fn_args": args, "timeout": 5}
    await assert_error(node, "/StartFunction", body, status=400, type_="InvalidArguments")


async def test_arguments_that_fit_are_taken_as_json_schema_reads_them(node: LocalNode) -> None:
    args = {
        "i": 1,
        "f": 2,
        "s": "s",
        "b": False,
        "items": [1],
        "mapping": {"k": None},
        "maybe": None,
    }
    status, body, _ = await put(
        node, "/StartFunction", {"fn_name": "typed", "fn_args": args, "timeout": 10}
    )
    assert status == 200 and body["result"] == args


async def test_invalid_arguments_start_no_process(node: LocalNode) -> None:
    body = {"fn_name": "add", "fn_args": {"a": "x", "b": 1}, "timeout": 5}
    _, before, _ = await put(node, "/ListFunctions", {})
    await assert_error(node, "/StartFunction", body, status=400, type_="InvalidArguments")
    _, after, _ = await put(node, "/ListFunctions", {})
    assert after["functions"] == before["functions"]


async def test_unknown_function(node: LocalNode) -> None:
    body = {"fn_name": "rm_rf", "fn_args": {}, "timeout": 5}
    await assert_error(node, "/StartFunction", body, status=404, type_="UnknownFunction")
    _, answer, _ = await put(node, "/StartFunction", {**body, "fn_name": "slep"})
    assert "did you mean 'sleep'?" in answer["error"]["message"]
    assert "`rpc-cli functions`" in answer["error"]["message"]


async def test_unknown_function_call(node: LocalNode) -> None:
    fnc_id = f"{node.pid}:2:1763800000.123456:0123456789abcdef"
    body = {"fnc_id": fnc_id, "timeout": 1}
    await assert_error(node, "/WaitForFunction", body, status=404, type_="UnknownFunctionCall")
    await assert_error(node, "/AbortFunction", body, status=404, type_="UnknownFunctionCall")


@pytest.mark.parametrize("path", ["/Nope", "/", "/StartFunction/extra", "/startfunction"])
async def test_unknown_procedure(node: LocalNode, path: str) -> None:
    await assert_error(node, path, {}, status=404, type_="UnknownProcedure")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PATCH"])
async def test_other_methods_are_not_allowed(node: LocalNode, method: str) -> None:
    headers = await assert_error(
        node, "/Identify", {}, method=method, status=405, type_="MethodNotAllowed"
    )
    assert headers["Allow"] == "PUT"


async def test_an_empty_body_means_an_empty_object(node: LocalNode) -> None:
    status, who, _ = await put(node, "/Identify", raw=b"")
    assert status == 200 and who["pid"] == node.pid
    await assert_error(node, "/StartFunction", raw=b"", status=400, type_="BadRequest")


async def test_the_body_limit_at_its_edge() -> None:
    limit = 2000
    async with run_node(["--max-request-bytes", str(limit)]) as node:
        envelope = b'{"fn_name": "echo", "timeout": 5, "fn_args": {"value": ""}}'
        padding = limit - len(envelope)
        exact = envelope.replace(b'""', b'"' + b"x" * padding + b'"')
        assert len(exact) == limit
        status, body, _ = await put(node, "/StartFunction", raw=exact)
        assert status == 200 and len(body["result"]) == padding
        over = exact.replace(b'"x', b'"xx', 1)
        await assert_error(node, "/StartFunction", raw=over, status=413, type_="RequestTooLarge")


async def test_the_default_body_limit_is_16_mib(node: LocalNode) -> None:
    over = b'{"pad": "' + b"x" * (16 * 1024 * 1024) + b'"}'
    await assert_error(node, "/Identify", raw=over, status=413, type_="RequestTooLarge")


async def test_busy_at_the_limit_of_running_functions() -> None:
    async with run_node(["--max-functions", "2"]) as node:
        sleeper = {"fn_name": "sleep", "fn_args": {"seconds": 3}, "timeout": 0}
        first = await put(node, "/StartFunction", {**sleeper, "request_id": "busy-1"})
        second = await put(node, "/StartFunction", sleeper)
        assert first[0] == second[0] == 200
        headers = await assert_error(node, "/StartFunction", sleeper, status=503, type_="Busy")
        assert int(headers["Retry-After"]) >= 1
        # an idempotent repeat of a running call is an answer, not a new process
        again = await put(node, "/StartFunction", {**sleeper, "request_id": "busy-1"})
        assert again[0] == 200 and again[1]["fnc_id"] == first[1]["fnc_id"]
        # once one finishes there is room again
        await put(node, "/WaitForFunction", {"fnc_id": second[1]["fnc_id"], "timeout": 10})
        status, _, _ = await put(node, "/StartFunction", {**ECHO, "timeout": 5})
        assert status == 200
