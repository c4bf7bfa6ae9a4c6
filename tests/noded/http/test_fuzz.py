"""The HTTP surface under attack: whatever arrives, a 4xx with the contract's error body.

Never a 500, never a crash: after every example the daemon still answers Identify with
the same pid.  Runs against a real daemon with only the built-in functions.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from masterd.local import LocalNode
from rpc_client.errors import REMOTE_ERRORS
from tests.helpers import node_env

PROCEDURES = [
    "StartFunction",
    "WaitForFunction",
    "AbortFunction",
    "ListFunctions",
    "Identify",
    "DescribeFunctions",
]
ERROR_TYPES = set(REMOTE_ERRORS) | {"Forbidden"}
# Derandomized, so that CI runs the same examples every time; NODED_FUZZ_EXAMPLES=5000
# NODED_FUZZ_RANDOM=1 make test hunts further.
SETTINGS = settings(
    max_examples=int(os.environ.get("NODED_FUZZ_EXAMPLES", "150")),
    derandomize=not os.environ.get("NODED_FUZZ_RANDOM"),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    args = ["--max-wait", "0.2", "--max-functions", "8", "--max-request-bytes", "65536"]
    workdir = tmp_path_factory.mktemp("fuzz")
    daemon = asyncio.run(LocalNode.start(args, env=node_env(), workdir=workdir))
    yield daemon
    asyncio.run(daemon.stop())


def send(
    node: LocalNode, method: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def assert_contract_answer(node: LocalNode, status: int, answer: Any) -> None:
    assert status != 500, answer
    if status == 200:
        assert isinstance(answer, dict)
    else:
        assert status in (400, 404, 405, 409, 413, 503), (status, answer)
        assert set(answer) == {"error"}
        assert answer["error"]["type"] in ERROR_TYPES
        assert isinstance(answer["error"]["message"], str) and answer["error"]["message"]
    who_status, who = send(node, "PUT", "/Identify", b"{}")
    assert who_status == 200 and who["pid"] == node.pid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
field_values = json_values | st.sampled_from(
    ["echo", "sleep", "node_info", "", "1:2:3.000000:0123456789abcdef", -1, 0, 1e308, "a" * 200]
)
request_objects = st.dictionaries(
    st.sampled_from(
        ["fn_name", "fn_args", "timeout", "abort_after", "request_id", "fnc_id", "extra"]
    ),
    field_values,
    max_size=6,
)


@SETTINGS
@given(procedure=st.sampled_from(PROCEDURES), body=request_objects)
def test_wrongly_typed_fields(target: LocalNode, procedure: str, body: dict[str, Any]) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    status, answer = send(target, "PUT", f"/{procedure}", raw)
    assert_contract_answer(target, status, answer)


@SETTINGS
@given(procedure=st.sampled_from(PROCEDURES), raw=st.binary(max_size=300))
def test_arbitrary_bytes(target: LocalNode, procedure: str, raw: bytes) -> None:
    status, answer = send(target, "PUT", f"/{procedure}", raw)
    assert_contract_answer(target, status, answer)


@SETTINGS
@given(procedure=st.sampled_from(PROCEDURES), body=request_objects, cut=st.integers(1, 200))
def test_truncated_json(target: LocalNode, procedure: str, body: dict[str, Any], cut: int) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    status, answer = send(target, "PUT", f"/{procedure}", raw[: max(1, len(raw) - cut)])
    assert_contract_answer(target, status, answer)


@SETTINGS
@given(depth=st.integers(1, 3000), where=st.sampled_from(["body", "fn_args", "request_id"]))
def test_deeply_nested_json(target: LocalNode, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    start = '{"fn_name": "echo", "timeout": 0, '
    raw = {
        "body": nested,
        "fn_args": start + '"fn_args": {"value": ' + nested + "}}",
        "request_id": start + '"fn_args": {"value": 1}, "request_id": ' + nested + "}",
    }[where].encode()
    status, answer = send(target, "PUT", "/StartFunction", raw)
    assert_contract_answer(target, status, answer)


@SETTINGS
@given(
    path=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="?#%"), max_size=40
    ),
    method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]),
)
def test_any_path_and_method(target: LocalNode, path: str, method: str) -> None:
    if method == "GET" and path == "metrics":
        return
    status, answer = send(target, method, "/" + path, b"{}")
    assert_contract_answer(target, status, answer)


def test_oversized_bodies(target: LocalNode) -> None:
    for size in (65536 + 1, 1_000_000):
        status, answer = send(target, "PUT", "/StartFunction", b" " * size)
        assert (status, answer["error"]["type"]) == (413, "RequestTooLarge")
    assert_contract_answer(target, 200, {})
