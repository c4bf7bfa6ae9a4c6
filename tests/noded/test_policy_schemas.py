"""Argument schemas in a policy file: every schema the loader accepts is one the daemon
honours at every call (``format`` enforced, ``$ref`` resolved at load inside the schema,
nothing fetched); the rest is refused at load, naming what is wrong."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from noded.policy.arg_schemas import FORMATS
from noded.policy.rules import Caller, PolicyError, load_policy
from noded.registry import load_modules
from rpc_client.errors import Forbidden
from tests.helpers import put, run_node, run_noded

REGISTRY = load_modules(["tests.functions"])
LOCAL = Caller("local", "127.0.0.1:1")
RULE = '[[allow]]\nclients = ["local"]\nfunctions = ["sleep_then"]\n'
PROCEDURES = 'procedures = ["StartFunction", "WaitForFunction", "Identify"]\n'


def problem(tmp_path: Path, schema: str, value: object) -> str | None:
    path = tmp_path / "policy.toml"
    path.write_text(f"{RULE}args = {{ value = {schema} }}\n")
    policy = load_policy(path, REGISTRY)
    return policy.args_problem(LOCAL, "sleep_then", {"seconds": 0, "value": value}, {})


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("ipv4", "192.0.2.7", "evil.example; rm -rf /"),
        ("ipv4", "10.0.0.1", "10.0.0.256"),
        ("ipv6", "2001:db8::1", "192.0.2.7"),
        ("hostname", "node1.example.org", "evil.example; rm -rf /"),
        ("hostname", "node-1", "-node"),
        ("uri", "https://example.org/a?b=c", "https://example.org/a b"),
        ("email", "ops@example.org", "ops@example.org; rm"),
        ("uuid", "7d444840-9dc0-11d1-b245-5ffdce74fad2", "7d444840"),
        ("date", "2026-12-07", "2026-13-07"),
    ],
)
def test_a_format_is_enforced(tmp_path: Path, fmt: str, good: str, bad: str) -> None:
    schema = f"{{ type = 'string', format = '{fmt}' }}"
    assert problem(tmp_path, schema, good) is None
    assert f"is not a '{fmt}'" in str(problem(tmp_path, schema, bad))


def test_every_format_named_is_checked() -> None:
    assert set(FORMATS) == {"ipv4", "ipv6", "hostname", "uri", "email", "uuid", "date"}


def test_a_reference_inside_the_schema_is_followed(tmp_path: Path) -> None:
    schema = "{ '$defs' = { ip = { type = 'string', format = 'ipv4' } }, '$ref' = '#/$defs/ip' }"
    assert problem(tmp_path, schema, "192.0.2.1") is None
    assert "is not a 'ipv4'" in str(problem(tmp_path, schema, "x; reboot"))
    anchored = "{ '$defs' = { ip = { '$anchor' = 'ip', format = 'ipv4' } }, '$ref' = '#ip' }"
    assert "is not a 'ipv4'" in str(problem(tmp_path, anchored, "x; reboot"))


@pytest.mark.parametrize(
    ("schema", "error"),
    [
        ("{ format = 'ipv5' }", "args.value has format 'ipv5', which is not checked; known: "),
        ("{ '$ref' = '#/$defs/nowhere' }", r"has \$ref '#/\$defs/nowhere', which resolves to "),
        ("{ '$ref' = '#nowhere' }", r"has \$ref '#nowhere', which resolves to nothing"),
        ("{ '$ref' = 'http://127.0.0.1:9/s' }", "points outside the schema.*nothing is fetched"),
        ("{ '$ref' = 'other.json#/x' }", r"has \$ref 'other.json#/x', which points outside"),
        ("{ '$ref' = '#' }", r"has \$ref '#', which loops back without reading the value"),
        ("{ anyOf = [{ '$ref' = '#' }] }", r"has \$ref '#', which loops back"),
        ("{ '$id' = 'http://127.0.0.1:9/', type = 'string' }", r"has \$id, which is not allowed"),
        ("{ '$dynamicRef' = '#' }", r"has \$dynamicRef, which is not allowed"),
        ("{ fromat = 'ipv4' }", r"has unknown keywords \['fromat'\]"),
        ("{ '$schema' = 'http://json-schema.org/draft-04/schema#' }", r"\$schema other than"),
        ("{ type = 5 }", "args.value is not a JSON Schema"),
    ],
)
def test_a_schema_the_daemon_cannot_honour_is_refused_at_load(
    tmp_path: Path, schema: str, error: str
) -> None:
    with pytest.raises(PolicyError, match=f"rule 1: {error}" if "args." in error else error):
        problem(tmp_path, schema, "x")


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"type": "string"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that serves a schema and records every request."""
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/schema.json", requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def start_refused(tmp_path: Path, schema: str) -> str:
    """Start a daemon with a policy holding ``schema``; assert it refuses; its stderr."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f"{RULE}{PROCEDURES}args = {{ value = {schema} }}\n")
    args = ["--state-dir", str(tmp_path / "state"), "--functions", "tests.functions",
            "--policy", str(policy), "--port", "0"]  # fmt: skip
    done = run_noded(*args, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stderr
    return done.stderr


def test_a_daemon_with_an_unresolvable_reference_does_not_start(tmp_path: Path) -> None:
    stderr = start_refused(tmp_path, "{ '$ref' = '#/$defs/address' }")
    assert "cannot start: policy" in stderr
    assert "args.value has $ref '#/$defs/address', which resolves to nothing" in stderr


def test_a_daemon_with_a_reference_to_a_url_does_not_start_nor_fetch_it(
    tmp_path: Path, schema_server: tuple[str, list[str]]
) -> None:
    url, requests = schema_server
    stderr = start_refused(tmp_path, f"{{ '$ref' = '{url}' }}")
    assert f"args.value has $ref '{url}', which points outside the schema" in stderr
    assert requests == []


async def test_a_daemon_enforces_a_format_and_answers_every_value(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f"{RULE}{PROCEDURES}args = {{ value = {{ anyOf = [{{ type = 'string', format = 'ipv4' "
        "}, { type = 'array', items = { '$ref' = '#' } }] } }\n"
    )
    async with run_node(["--policy", str(policy)], workdir=tmp_path) as node:
        client = node.client()
        async with client:
            state = await client.start_function("sleep_then", {"seconds": 0, "value": "10.0.0.1"},
                                                timeout=30)  # fmt: skip
            assert state.result == "10.0.0.1"
            with pytest.raises(Forbidden, match="argument 'value'"):
                await client.start_function(
                    "sleep_then", {"seconds": 0, "value": "evil.example; rm -rf /"}, timeout=30
                )
        # a value nested deeper than the recursive schema can follow: refused, not a 500
        deep = "[" * 900 + "]" * 900
        fn_args = f'{{"seconds": 0, "value": {deep}}}'
        body = f'{{"fn_name": "sleep_then", "fn_args": {fn_args}, "timeout": 30}}'
        status, answer, _ = await put(node, "/StartFunction", raw=body.encode())
        assert status == 403, answer
        assert "nested too deeply to check" in str(answer)
