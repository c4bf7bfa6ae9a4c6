"""The protocol module: fnc_ids, request parsing, the call state, error mapping."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rpc_client import errors
from rpc_client.errors import (
    BadRequest,
    NodeBusy,
    ProtocolError,
    remote_error_from_wire,
)
from rpc_client.protocol import (
    FNC_ID_RE,
    CallState,
    FncId,
    StartFunctionRequest,
    WaitForFunctionRequest,
    parse_body,
)


def test_new_fnc_ids_match_the_format_and_round_trip() -> None:
    fnc_id = FncId.new(4242, 4250, 1763800000.1234567)
    text = str(fnc_id)
    assert FNC_ID_RE.fullmatch(text)
    assert text.startswith("4242:4250:1763800000.123457:")
    assert FncId.parse(text) == fnc_id
    assert FncId.new(1, 2, 3.0).random != FncId.new(1, 2, 3.0).random


def test_the_contracts_example_parses() -> None:
    fnc_id = FncId.parse("4242:4250:1763800000.123456:9f3a61c2d4e5f607")
    assert (fnc_id.ppid, fnc_id.cpid) == (4242, 4250)


def test_start_request_defaults() -> None:
    request = StartFunctionRequest.from_wire({"fn_name": "echo", "timeout": 2})
    assert request.fn_args == {}
    assert request.abort_after is None and request.request_id is None
    assert StartFunctionRequest.from_wire(request.to_wire()) == request


@pytest.mark.parametrize("timeout", [0, 0.5, 3, 1e300])
def test_timeouts_that_are_taken(timeout: float) -> None:
    assert (
        WaitForFunctionRequest.from_wire(
            {"fnc_id": "1:2:3.000000:0123456789abcdef", "timeout": timeout}
        ).timeout
        == timeout
    )


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "1", True, None, [1]])
def test_timeouts_that_are_refused(timeout: Any) -> None:
    with pytest.raises(BadRequest, match="timeout"):
        StartFunctionRequest.from_wire({"fn_name": "echo", "timeout": timeout})


@pytest.mark.parametrize("raw", [b"[]", b"1", b"null", b"{", b"\xff"])
def test_bodies_that_are_not_objects_are_refused(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_body(raw)


def test_empty_body_is_an_empty_object() -> None:
    assert parse_body(b"") == {} and parse_body(b"  \n") == {}


FNC_ID = "1:2:3.000000:0123456789abcdef"
GOOD = {"fnc_id": FNC_ID, "finished": True, "result": None, "error": None, "progress": None,
        "output_next": 0}  # fmt: skip


def test_call_state_round_trip() -> None:
    state = CallState(FNC_ID, True, {"a": 1}, None)
    assert CallState.from_wire(state.to_wire()) == state
    assert state.ok
    full = CallState(FNC_ID, True, None, {"type": "E", "message": "m", "traceback": None},
                     {"fraction": 1, "message": "", "at": 1.5}, 3,
                     {"from": 0, "next": 3, "skipped": 0,
                      "events": [{"stream": "stdout", "text": "x"},
                                 {"stream": "progress", "fraction": 0.5, "text": ""}]})  # fmt: skip
    assert CallState.from_wire(full.to_wire()) == full


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"fnc_id": 1}, "fnc_id 1 is not"),
        ({"fnc_id": "../../etc"}, "fnc_id '../../etc' is not <ppid>"),
        ({"fnc_id": FNC_ID + "\n"}, "fnc_id"),
        ({"fnc_id": "0:2:3.000000:0123456789abcdef"}, "fnc_id"),
        ({"finished": "no"}, "finished 'no' is not a boolean"),
        ({"finished": None}, "finished None"),
        ({"error": "text"}, "error is 'text', neither null nor an object"),
        ({"error": {"type": 5, "message": None}}, "error.type 5 is not a string"),
        ({"error": {"type": "E", "message": None}}, "error.message None is not a string"),
        ({"error": {"type": "E", "message": "m", "traceback": 1}}, "error.traceback"),
        ({"progress": 1}, "progress is 1, neither null nor an object"),
        ({"progress": {"fraction": 7, "message": "", "at": 1}}, "progress.fraction 7 is not"),
        ({"progress": {"fraction": -0.1, "message": "", "at": 1}}, "progress.fraction -0.1"),
        ({"progress": {"fraction": True, "message": "", "at": 1}}, "progress.fraction True"),
        ({"progress": {"fraction": "1", "message": "", "at": 1}}, "progress.fraction '1'"),
        ({"progress": {"fraction": 0.5, "message": 1, "at": 1}}, "progress.message 1 is not"),
        ({"progress": {"fraction": 0.5, "message": "", "at": "x"}}, "progress.at 'x' is not"),
        ({"progress": {"fraction": 0.5, "message": ""}}, "progress.at None is not a number"),
        ({"output_next": -5}, "output_next -5 is not an integer >= 0"),
        ({"output_next": 1.5}, "output_next 1.5"),
        ({"output_next": True}, "output_next True"),
        ({"output_next": None}, "output_next None"),
        ({"output": {"from": -1, "next": 0, "skipped": 0, "events": []}}, "output is not"),
        ({"output": {"from": 0, "next": 0, "skipped": False, "events": []}}, "output is not"),
        ({"output": {"from": 0, "next": 0, "skipped": 0, "events": [1]}}, "output is not"),
        ({"output": {"from": 0, "next": 0, "skipped": 0, "events": [{"text": "x"}]}},
         "output is not"),
        ({"output": {"from": 0, "next": 0, "skipped": 0,
                     "events": [{"stream": "stdout", "text": 5}]}}, "output is not"),
    ],
)  # fmt: skip
def test_a_call_state_outside_the_contract_is_refused(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=f"^call state {re.escape(words)}"):
        CallState.from_wire({**GOOD, **change})


@pytest.mark.parametrize("bad", [[], None, "state"])
def test_a_call_state_that_is_no_object_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="call state is not a JSON object"):
        CallState.from_wire(bad)


def test_unknown_answer_fields_are_ignored() -> None:
    wire = {"fnc_id": FNC_ID, "finished": False, "result": None, "error": None, "new": 1}
    assert CallState.from_wire(wire).finished is False


def test_a_function_failures_message_is_the_nodes_own() -> None:
    """Not "DiskFull: x": the type is ``.type``, and str() shows the two once each."""
    failed = errors.function_error(
        {"type": "DiskFull", "message": "x", "traceback": None}, fnc_id=FNC_ID, node="n1"
    )
    assert isinstance(failed, errors.FunctionFailed)
    assert (failed.type, failed.message) == ("DiskFull", "x")
    assert str(failed) == "DiskFull: x (node n1)"


@pytest.mark.parametrize("cls", list(errors.REMOTE_ERRORS.values()))
def test_every_remote_error_type_maps_back_to_its_class(cls: type[errors.RemoteError]) -> None:
    body = {"error": {"type": cls.wire_type, "message": "words"}}
    exc = remote_error_from_wire(cls.status, body, node="n1", retry_after="3")
    assert type(exc) is cls
    assert exc.message == "words" and exc.node == "n1"
    if cls is NodeBusy or cls is errors.StoreUnavailable:
        assert getattr(exc, "retry_after_s", None) == 3.0


def test_the_wire_types_are_the_contracts() -> None:
    assert {cls.wire_type: cls.status for cls in errors.REMOTE_ERRORS.values()} == {
        "BadRequest": 400,
        "InvalidArguments": 400,
        "UnknownFunction": 404,
        "UnknownFunctionCall": 404,
        "UnknownProcedure": 404,
        "MethodNotAllowed": 405,
        "RequestIdConflict": 409,
        "InsufficientStorage": 507,
        "RequestTooLarge": 413,
        "Busy": 503,
        "ShuttingDown": 503,
        # part 2 (ganeti-masterd)
        "NodeConflict": 409,
        "NotRegistered": 409,
        "UnknownCommand": 404,
        "UnknownJob": 404,
        "CommandTimeout": 504,
        "StoreUnavailable": 503,
        # not in the contract's table: --tls-allowed-clients (doc/security.md)
        "Forbidden": 403,
    }


@pytest.mark.parametrize("body", [None, [], {"error": "x"}, {"error": {"type": "Nope"}}])
def test_error_bodies_outside_the_contract_are_protocol_errors(body: Any) -> None:
    assert isinstance(remote_error_from_wire(500, body), ProtocolError)


def test_function_failed_carries_the_remote_error() -> None:
    exc = errors.FunctionFailed(
        {"type": "ValueError", "message": "bad", "traceback": "tb"}, fnc_id="f", node="n"
    )
    assert (exc.type, exc.traceback, exc.fnc_id, exc.node) == ("ValueError", "tb", "f", "n")
    assert str(exc) == "ValueError: bad (node n)"
