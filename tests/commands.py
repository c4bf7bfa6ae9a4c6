"""Master commands for the tests (``ganeti-masterd --commands tests.commands``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from masterd import command


@command
def allocate_slot(node: str, disk: str, size_gb: int = 10) -> dict[str, Any]:
    """A slot for ``disk`` of the calling node."""
    return {"node": node, "disk": disk, "size_gb": size_gb}


@command
def add(a: int, b: int = 0) -> int:
    return a + b


@command
async def async_echo(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


@command
def fails(message: str) -> None:
    raise ValueError(message)


@command
async def fails_async(message: str) -> None:
    raise KeyError(message)


@command
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@command
async def slow_async(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@command
def thread_name() -> str:
    return threading.current_thread().name


@command
async def thread_name_async() -> str:
    return threading.current_thread().name


@command(name="renamed")
def some_function() -> str:
    return "renamed"


@command
def no_json() -> Any:
    return {1, 2}


@command
def whoami(node: str, **args: Any) -> str:
    """The calling node's name, whatever the arguments."""
    return node
