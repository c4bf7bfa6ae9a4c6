"""``GET /openapi.json``: a valid OpenAPI 3.1 document made from the code that checks
requests, and a daemon that answers nothing outside it (schemathesis, bounded)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from masterd.local import LocalNode
from rpc_client import protocol
from rpc_client.errors import BadRequest
from tests.helpers import get_text

#: how long the schemathesis run may take (longer: NODED_FUZZ_S=600 make test)
FUZZ_S = int(os.environ.get("NODED_FUZZ_S", "10"))


async def document(node: LocalNode) -> dict[str, Any]:
    status, text, headers = await get_text(node, "/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    return orjson.loads(text)


async def test_the_document_is_valid_and_names_every_procedure_and_function(
    shared_node: LocalNode,
) -> None:
    doc = await document(shared_node)
    validate(doc)  # OpenAPI 3.1
    assert set(doc["paths"]) == {f"/{name}" for name in protocol.REQUESTS} | {
        "/metrics", "/openapi.json",
    }  # fmt: skip
    start = doc["paths"]["/StartFunction"]["put"]
    assert {"200", "400", "403", "404", "409", "413", "503", "507"} <= set(start["responses"])
    assert "404" in doc["paths"]["/WaitForFunction"]["put"]["responses"]
    async with shared_node.client() as client:
        described = await client.describe_functions()
    by_name = {
        branch["properties"]["fn_name"]["const"]: branch["properties"]["fn_args"]
        for branch in start["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    }
    assert by_name == {name: entry["params"] for name, entry in described.items()}
    body = {"fn_name": "add", "fn_args": {"a": 1, "b": "two"}, "timeout": 1}
    with pytest.raises(jsonschema.ValidationError):  # the document checks fn_args too
        jsonschema.validate(body, start["requestBody"]["content"]["application/json"]["schema"])


_ANYTHING: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.just(""), st.just({}), st.just([])
)
_NUMBERS = st.one_of(st.integers(-3, 2**40), st.floats(-3, 1e12, allow_nan=False))
_VALUES = {
    "fn_name": st.text(alphabet="ab_", max_size=4),
    "fn_args": st.one_of(st.dictionaries(st.text(max_size=3), st.integers()), st.integers()),
    "timeout": _NUMBERS,
    "abort_after": _NUMBERS,
    "request_id": st.text(alphabet="ab1.:-_ %/", max_size=8) | st.text(min_size=129, max_size=130),
    "fnc_id": st.sampled_from(["4242:4250:1763800000.123456:9f3a61c2d4e5f607",
                               "0:4250:1763800000.123456:9f3a61c2d4e5f607", "4242:x", "1:2:3.4:5"]),
    "output_from": _NUMBERS,
}  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A procedure, and a body of its fields, each left out, odd or plausible."""
    procedure = draw(st.sampled_from(sorted(protocol.REQUESTS)))
    fields, _ = protocol.REQUESTS[procedure]
    body = draw(st.fixed_dictionaries(
        {}, optional={name: _VALUES[name] | _ANYTHING for name in fields}
    ))  # fmt: skip
    return procedure, body


@settings(max_examples=500, deadline=None)
@given(requests())
def test_the_schema_and_the_parser_accept_the_same_requests(
    request: tuple[str, dict[str, Any]],
) -> None:
    procedure, body = request
    parsers = {
        protocol.START_FUNCTION: protocol.StartFunctionRequest.from_wire,
        protocol.WAIT_FOR_FUNCTION: protocol.WaitForFunctionRequest.from_wire,
        protocol.ABORT_FUNCTION: protocol.AbortFunctionRequest.from_wire,
    }
    valid = jsonschema.Draft202012Validator(protocol.request_schema(procedure)).is_valid(body)
    parse = parsers.get(procedure, lambda body: body)
    try:
        parse(body)
    except BadRequest as exc:
        assert not valid, f"the schema takes {body}, the parser refuses it: {exc}"
    else:
        assert valid, f"the parser takes {body}, the schema refuses it"


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    tmp_path: Path,
) -> None:
    # the built-in functions only: a fuzzer must not call the tests' process-killing ones
    args = ["--max-wait", "0.5", "--max-functions", "64"]
    async with LocalNode.running(args, workdir=tmp_path) as node:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "run",
            f"http://{node.address}/openapi.json",
            "--checks", "not_a_server_error,status_code_conformance,"
            "content_type_conformance,response_schema_conformance",
            "--max-time", str(FUZZ_S), "--request-timeout", "5", "--seed", "1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,  # its cache (.schemathesis/) goes there, not into the tree
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), FUZZ_S + 120)
        report = out.decode(errors="replace")
        assert proc.returncode == 0, report[-4000:]
        assert "internal_error" not in node.log_text()
