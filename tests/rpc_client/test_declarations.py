"""Declarations: schemas from annotations and the argument checks, for @function and
@command alike (noded checks them before any spawn, masterd before a command runs)."""

from __future__ import annotations

from typing import Any

import pytest

from rpc_client.declarations import Declarations, declare, matches_schema, schema_of
from rpc_client.errors import InvalidArguments


def sample(
    count: int,
    ratio: float,
    name: str,
    flag: bool,
    tags: list[str],
    extra: dict[str, int],
    note: str | None = None,
    anything: Any = 1,
) -> None:
    """A sample function.

    More words."""


def test_schema_from_annotations() -> None:
    spec = declare(sample, "sample")
    assert spec.doc.startswith("A sample function.")
    assert spec.schema() == {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "name": {"type": "string"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object", "additionalProperties": {"type": "integer"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "anything": {"default": 1},
        },
        "required": ["count", "ratio", "name", "flag", "tags", "extra"],
        "additionalProperties": False,
    }


GOOD = {"count": 1, "ratio": 1.5, "name": "n", "flag": True, "tags": ["a"], "extra": {"k": 1}}


def test_fitting_arguments_pass() -> None:
    spec = declare(sample, "sample")
    spec.check_args(GOOD)
    spec.check_args({**GOOD, "ratio": 2, "note": None, "anything": [{"x": None}]})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"count": 1.0}, "'count' must be integer, got number"),
        ({"count": True}, "'count' must be integer, got boolean"),
        ({"ratio": False}, "'ratio' must be number, got boolean"),
        ({"ratio": "1"}, "'ratio' must be number, got string"),
        ({"name": None}, "'name' must be string, got null"),
        ({"flag": 0}, "'flag' must be boolean, got integer"),
        ({"tags": ["a", 1]}, "'tags' must be array of string"),
        ({"tags": "a"}, "'tags' must be array of string, got string"),
        ({"extra": {"k": "v"}}, "'extra' must be object"),
        ({"note": 5}, "'note' must be string or null, got integer"),
        ({"surprise": 1}, "unknown arguments: surprise"),
    ],
)
def test_arguments_that_do_not_fit_say_why(change: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArguments, match=words.replace("(", r"\(")):
        declare(sample, "sample").check_args({**GOOD, **change})


def test_missing_arguments_are_named() -> None:
    with pytest.raises(InvalidArguments, match="missing arguments: ratio, tags"):
        declare(sample, "sample").check_args(
            {k: v for k, v in GOOD.items() if k not in ("ratio", "tags")}
        )


def test_var_keyword_takes_unknown_names() -> None:
    def loose(a: int, **rest: Any) -> None: ...

    spec = declare(loose, "loose")
    assert spec.schema()["additionalProperties"] is True
    spec.check_args({"a": 1, "b": "anything"})


def test_positional_only_and_var_positional_are_refused() -> None:
    def positional(a: int, /) -> None: ...

    def star(*args: int) -> None: ...

    for func in (positional, star):
        with pytest.raises(TypeError, match="must be nameable"):
            declare(func, "f")


def test_annotations_without_a_json_form_are_refused() -> None:
    def odd(a: set[int]) -> None: ...

    with pytest.raises(TypeError, match="no JSON form"):
        declare(odd, "odd")


def test_a_name_registered_twice_is_refused() -> None:
    def one() -> None: ...

    def two() -> None: ...

    registry: Declarations = Declarations("function")
    registry.add(declare(one, "same"))
    registry.add(declare(one, "same"))  # re-importing the same function is fine
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(declare(two, "same"))


def test_schema_checks_follow_json_schema() -> None:
    assert matches_schema(2, schema_of(float, "x"))
    assert not matches_schema(2.0, schema_of(int, "x"))
    assert not matches_schema(True, schema_of(float, "x"))
    assert matches_schema(None, schema_of(int | None, "x"))
    assert matches_schema({"a": [1]}, schema_of(dict, "x"))
