"""Fixtures of the process layer's tests."""

from tests.cgroups import isolation

__all__ = ["isolation"]
