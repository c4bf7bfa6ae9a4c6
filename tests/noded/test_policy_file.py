"""Reading a policy file: every mistake is said at load, and a daemon whose policy
cannot be used does not start."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from masterd.local import free_port
from noded.policy.rules import (
    ANONYMOUS,
    LOCAL,
    Caller,
    Policy,
    PolicyError,
    load_policy,
    plain_http_warning,
)
from noded.registry import load_modules
from tests.helpers import ROOT, eventually, node_env, noded_argv, run_noded

REGISTRY = load_modules(["tests.functions"])
MASTER = Caller("master", "10.0.0.1:5000", "ab" * 32)


def policy_of(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path, REGISTRY)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[[allow]]\nclients = ["a"]\nfunctoins = ["*"]', r"rule 1: unknown keys \['functoins'\]"),
        ("[[allow]]\nclients = []", "rule 1: clients is empty"),
        ('[[allow]]\nfunctions = ["echo"]', "rule 1: clients must be a list"),
        ('[[allow]]\nclients = ["a"]\nprocedures = ["Start"]', r"unknown procedures \['Start'\]"),
        ('[[allow]]\nclients = ["a"]\nargs = { x = { type = 5 } }', "args.x is not a JSON Schema"),
        ('[[allow]]\nclients = ["a"]\nothers_calls = "yes"', "others_calls must be true or false"),
        (f'[[allow]]\nclients = ["{"ab" * 32}"]', "as sha256:<hex>"),
        ('[[allow]]\nclients = ["sha256:abc"]', "is not sha256: and 64 lowercase hex"),
        ('[[deny]]\nclients = ["a"]', r"unknown keys \['deny'\]"),
        ("[[allow]\n", "policy .*policy.toml: "),
    ],
)
def test_a_policy_with_a_mistake_is_refused_saying_where(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(PolicyError, match=error):
        policy_of(tmp_path, text)


def test_patterns_that_match_no_function_are_warned_about(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        '[[allow]]\nclients = ["a"]\nfunctions = ["ech*", "no_such_*"]\n'
        "args = { value = { type = 'integer' }, colour = { enum = ['red'] } }\n",
    )
    assert policy.warnings == [
        "rule 1: functions pattern 'no_such_*' matches no function",
        "rule 1: args.colour is no parameter of the functions it names",
    ]
    assert policy_of(tmp_path, "").warnings == ["the policy has no rule: every request is denied"]


def test_who_a_rule_names(tmp_path: Path) -> None:
    fingerprint = "cd" * 32
    policy = policy_of(
        tmp_path,
        f'[[allow]]\nclients = ["*"]\nprocedures = ["Identify"]\n'
        f'[[allow]]\nclients = ["sha256:{fingerprint}", "local"]\nprocedures = ["ListFunctions"]\n',
    )
    assert policy.allows_procedure(MASTER, "Identify")
    assert not policy.allows_procedure(MASTER, "ListFunctions")
    by_fingerprint = Caller("anyone", "10.0.0.2:1", fingerprint)
    assert policy.allows_procedure(by_fingerprint, "ListFunctions")
    assert policy.allows_procedure(Caller(LOCAL, "127.0.0.1:1"), "ListFunctions")
    # "*" is any certified client: not a plain-HTTP one, nor one that calls itself local
    assert not policy.allows_procedure(Caller(LOCAL, "127.0.0.1:1"), "Identify")
    assert not policy.allows_procedure(Caller(ANONYMOUS, "10.0.0.3:1"), "Identify")
    assert not policy.allows_procedure(Caller(LOCAL, "10.0.0.2:1", "ef" * 32), "ListFunctions")


def test_an_argument_rule_checks_the_default_of_an_argument_not_given(tmp_path: Path) -> None:
    policy = policy_of(
        tmp_path,
        '[[allow]]\nclients = ["master"]\nfunctions = ["sleep_then"]\n'
        "args = { value = { type = 'integer' }, seconds = { maximum = 5 } }\n",
    )
    assert policy.args_problem(MASTER, "sleep_then", {"seconds": 1, "value": 3}, {}) is None
    assert "argument 'value': the value is not of type 'integer' (rule 1)" in str(
        policy.args_problem(MASTER, "sleep_then", {"seconds": 1, "value": "x"}, {})
    )
    assert policy.args_problem(MASTER, "sleep_then", {"seconds": 1}, {"value": 2}) is None
    assert "argument 'value' must be given" in str(
        policy.args_problem(MASTER, "sleep_then", {"seconds": 1}, {})
    )


def test_a_rule_without_procedures_grants_the_call_procedures(tmp_path: Path) -> None:
    policy = policy_of(tmp_path, '[[allow]]\nclients = ["master"]\nfunctions = ["echo"]\n')
    for procedure in ("StartFunction", "WaitForFunction", "AbortFunction", "ListFunctions",
                      "Identify", "DescribeFunctions", "GET /openapi.json"):  # fmt: skip
        assert policy.allows_procedure(MASTER, procedure), procedure
    assert not policy.allows_procedure(MASTER, "ReloadFunctions")
    assert not policy.allows_procedure(MASTER, "GET /metrics")
    assert policy.shows_metrics_of(MASTER, "echo")
    assert not policy.shows_metrics_of(MASTER, "sleep_then")


SECRET = "hunter2-" + "s" * 300


@pytest.mark.parametrize(
    ("schema", "value", "says"),
    [
        ("{ enum = ['a'] }", SECRET, "the value is not one of ['a']"),
        ("{ maxLength = 3 }", SECRET, "the value is too long"),
        ("{ properties = { token = { const = 'a' } } }", {"token": SECRET},
         "inside it, 'a' was expected"),
        ("{ items = { maxLength = 3 } }", [SECRET], "inside it, the value is too long"),
        ("{ additionalProperties = false }", {SECRET: 1},
         "the value fails the schema's 'additionalProperties'"),
        ("{ propertyNames = { maxLength = 3 } }", {SECRET: 1}, "the value is too long"),
    ],
)  # fmt: skip
def test_what_an_argument_rule_refused_never_shows_the_value(
    tmp_path: Path, schema: str, value: object, says: str
) -> None:
    policy = policy_of(
        tmp_path, f'[[allow]]\nclients = ["master"]\nargs = {{ value = {schema} }}\n'
    )
    problem = policy.args_problem(MASTER, "sleep_then", {"value": value}, {})
    assert problem is not None and "hunter2" not in problem and len(problem) <= 200
    assert f"argument 'value': {says} (rule 1)" == problem


def test_tls_allowed_clients_is_a_policy_of_one_rule() -> None:
    fingerprint = "ab" * 32
    policy = Policy.allow_clients(["master1", fingerprint])
    assert policy.allows_procedure(Caller("master1", "x:1", "00" * 32), "StartFunction")
    assert policy.allows_procedure(Caller("other", "x:1", fingerprint), "AbortFunction")
    assert policy.others_calls(Caller("master1", "x:1", "00" * 32))
    assert policy.allows_procedure(Caller("master1", "x:1", "00" * 32), "ReloadFunctions")
    assert not policy.allows_procedure(Caller("master2", "x:1", "11" * 32), "Identify")


def test_a_daemon_whose_policy_cannot_be_used_does_not_start(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[allow]]\nclients = ["master"]\nfunctoins = ["*"]\n')
    args = ["--state-dir", str(tmp_path / "state"), "--functions", "tests.functions",
            "--policy", str(policy), "--port", "0"]  # fmt: skip
    done = run_noded(*args, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "cannot start: policy" in done.stderr and "unknown keys ['functoins']" in done.stderr
    done = run_noded(*args, "--tls-allowed-clients", "m", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "give --policy or --tls-allowed-clients, not both" in done.stderr


@pytest.mark.parametrize(
    ("clients", "refuses_all"),
    [('["master1", "master2"]', True), ('["*"]', True), ('["master1", "local"]', False),
     ('["anonymous"]', False)],
)  # fmt: skip
def test_a_policy_naming_only_certificate_clients_is_said_to_refuse_all_without_tls(
    tmp_path: Path, clients: str, refuses_all: bool
) -> None:
    policy = policy_of(tmp_path, f"[[allow]]\nclients = {clients}\n")
    assert (plain_http_warning(policy) is not None) == refuses_all


async def test_a_daemon_without_tls_warns_at_start_of_a_policy_that_refuses_all(
    tmp_path: Path,
) -> None:
    """It started silently and then answered every request 403."""
    policy, log_file, stderr = tmp_path / "policy.toml", tmp_path / "log", tmp_path / "stderr"
    policy.write_text('[[allow]]\nclients = ["master1"]\n')
    port = free_port()
    argv = noded_argv("--state-dir", str(tmp_path / "state"), "--functions", "tests.functions",
                      "--policy", str(policy), "--port", str(port),
                      "--log-file", str(log_file))  # fmt: skip
    with stderr.open("wb") as err:
        daemon = subprocess.Popen(argv, stdout=err, stderr=err, cwd=ROOT, env=node_env())
    try:
        await eventually(lambda: "daemon.ready" in _text(log_file), 60)
        said = "rules name only certificate clients, but this daemon has no TLS"
        assert f"ganeti-noded: warning: the policy's {said}" in _text(stderr)
        assert "policy.warning" in _text(log_file) and said in _text(log_file)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/Identify", b"{}", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403  # as the warning said
    finally:
        daemon.terminate()
        daemon.wait(30)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
