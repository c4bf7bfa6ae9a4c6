"""Bad requests to a real ganeti-masterd: each answered with the contract's error body,
and the daemon goes on serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from openapi_spec_validator import validate

from tests.masterd.daemon.running import Masterd, events, registration, start_masterd


@pytest.fixture(scope="module")
def masterd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Masterd]:
    """One daemon for the module: every test here leaves it as it found it."""
    workdir = tmp_path_factory.mktemp("masterd")
    daemon = asyncio.run(start_masterd(["--max-request-bytes", "4096"], workdir))
    yield daemon
    asyncio.run(daemon.stop())


GOOD_BEAT = {"uuid": "u", "instance": "i", "running": 0}
GOOD_REPORT = {"uuid": "u", "spool": "s", "events": events(1)}
BAD_BODIES: list[tuple[str, Any]] = [
    ("Register", {}),
    ("Register", registration("n1", port=0)),
    ("Register", registration("n1", port="1811")),
    ("Register", registration("n1", labels="a,b")),
    ("Register", registration("n1", pid=True)),
    ("Register", {**registration("n1"), "name": ""}),
    ("Heartbeat", {"uuid": "u", "instance": "i"}),
    ("Heartbeat", {**GOOD_BEAT, "running": -1}),
    ("Heartbeat", {**GOOD_BEAT, "uuid": 7}),
    ("Report", {"uuid": "u", "spool": "s"}),
    ("Report", {**GOOD_REPORT, "events": [{"seq": 1, "type": "t"}]}),
    ("Report", {**GOOD_REPORT, "events": [{"seq": -1, "type": "t", "at": 1}]}),
    ("Report", {**GOOD_REPORT, "events": [{"seq": 1, "type": "", "at": 1}]}),
    ("Report", {**GOOD_REPORT, "events": ["x"]}),
    ("WaitForEvents", {"timeout": 1}),
    ("WaitForEvents", {"from": -1, "timeout": 1}),
    ("WaitForEvents", {"from": 0}),
    ("WaitForEvents", {"from": 0, "timeout": -1}),
    ("WaitForEvents", {"from": 0, "timeout": 1, "types": "disk.*"}),
    ("WaitForEvents", {"from": 0, "timeout": 1, "nodes": [1]}),
]


@pytest.mark.parametrize(("procedure", "body"), BAD_BODIES)
async def test_a_malformed_body_is_a_bad_request(
    masterd: Masterd, procedure: str, body: Any
) -> None:
    status, answer, _ = await masterd.put(procedure, body)
    assert status == 400, answer
    assert answer["error"]["type"] == "BadRequest" and answer["error"]["message"]


@pytest.mark.parametrize("raw", [b"[1]", b"{", b"\xff\xfe", b'"text"'])
@pytest.mark.parametrize("procedure", ["Register", "Heartbeat", "Report", "WaitForEvents"])
async def test_a_body_that_is_not_a_json_object_is_a_bad_request(
    masterd: Masterd, procedure: str, raw: bytes
) -> None:
    status, answer, _ = await masterd.put(procedure, raw=raw)
    assert status == 400 and answer["error"]["type"] == "BadRequest"


async def test_unknown_procedure_wrong_method_and_a_body_over_the_limit(
    masterd: Masterd,
) -> None:
    status, answer, _ = await masterd.put("StartFunction", {})
    assert status == 404 and answer["error"]["type"] == "UnknownProcedure"
    status, answer, headers = await masterd.put("ListNodes", method="POST")
    assert status == 405 and answer["error"]["type"] == "MethodNotAllowed"
    assert headers["Allow"] == "PUT"
    big = registration("n1", labels=["x" * 100] * 100)
    status, answer, _ = await masterd.put("Register", big)
    assert status == 413 and answer["error"]["type"] == "RequestTooLarge"
    assert (await masterd.nodes()) == {}  # still serving, nothing stored


async def test_metrics_and_openapi_are_served(masterd: Masterd) -> None:
    status, text = await masterd.get("/metrics")
    assert status == 200 and "masterd_heartbeats_total" in text
    status, text = await masterd.get("/openapi.json")
    assert status == 200 and '"/WaitForEvents"' in text and '"NodeConflict"' in text
    validate(orjson.loads(text))  # OpenAPI 3.1


@pytest.mark.parametrize(
    "raw",
    [
        b"PUT /Register HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"PUT /Register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"PUT /Register HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    ],
)
async def test_malformed_http_is_answered_with_the_error_body(masterd: Masterd, raw: bytes) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", masterd.port), 10)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400"
    assert orjson.loads(body)["error"]["type"] == "BadRequest"
    assert (await masterd.nodes()) == {}  # still serving
