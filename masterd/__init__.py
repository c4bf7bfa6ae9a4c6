"""The master side: calling functions on nodes with deadlines."""

from __future__ import annotations

from masterd.call import call_function, run_call

__all__ = ["call_function", "run_call"]
