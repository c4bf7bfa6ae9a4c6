"""The function registry: ``@function`` declares (rpc_client.declarations) with limits."""

from __future__ import annotations

import pytest

from noded.registry import FunctionSpec, Registry, spec_of
from rpc_client.declarations import Declaration
from rpc_client.errors import InvalidArguments


def resize(disk: str, size_gb: int = 10) -> None:
    """Grow a disk."""


def test_a_function_spec_is_its_declaration_with_limits() -> None:
    spec = spec_of(resize, "resize")
    assert isinstance(spec, FunctionSpec) and isinstance(spec, Declaration)
    assert spec.limits == {} and spec.limits_over({"cpu_s": 5}) == {"cpu_s": 5}
    described = spec.describe({"cpu_s": 5})
    assert described["doc"] == "Grow a disk." and described["limits"] == {"cpu_s": 5}
    assert described["params"]["required"] == ["disk"]
    with pytest.raises(InvalidArguments, match=r"resize\(\) argument 'size_gb' must be integer"):
        spec.check_args({"disk": "sdb", "size_gb": "big"})


def test_a_function_name_registered_twice_is_refused() -> None:
    def other() -> None: ...

    registry = Registry()
    registry.add(spec_of(resize, "same"))
    with pytest.raises(ValueError, match="function name 'same' registered twice"):
        registry.add(spec_of(other, "same"))
    assert registry.names() == ["same"] and registry.describe()["same"]["limits"] == {}
