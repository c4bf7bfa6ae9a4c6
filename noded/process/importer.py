"""Importing the function modules in a child process, with a time bound.

A reload must not import in the daemon's event loop: a module whose import takes seconds
(or hangs) would stall every request meanwhile.  The modules are imported by
``python -m noded.process.child.describe``, which answers what the daemon needs of them;
one that takes longer than ``timeout_s`` is killed and the import is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys

from noded.process import helpers
from noded.process.child.describe import registry_from
from noded.process.spawners import child_environment
from noded.registry import Registry

#: the most a description may take (every function's schema; far more than any needs)
MAX_DESCRIPTION_BYTES = 64 * 1024 * 1024
#: the end of the importer's stderr kept for an error message
_STDERR_TAIL_BYTES = 2048
_KILL_WAIT_S = 5.0


class ImportTimeout(ImportError):
    """Raised when the function modules take longer than the bound to import."""


async def import_in_child(modules: list[str], timeout_s: float) -> Registry:
    """The registry of ``modules``, imported by a child process within ``timeout_s``.

    Raises :class:`ImportError` saying why a module did not import (its own words), or
    :class:`ImportTimeout`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-m", "noded.process.child.describe", *modules,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=child_environment(), start_new_session=True,
    )  # fmt: skip
    helpers.track(proc.pid, functools.partial(_kill_group, proc))
    try:
        async with asyncio.timeout(timeout_s):
            answer, stderr = await asyncio.gather(
                _read_bounded(proc.stdout, MAX_DESCRIPTION_BYTES),
                _read_tail(proc.stderr, _STDERR_TAIL_BYTES),
            )
            await proc.wait()
    except TimeoutError:
        raise ImportTimeout(
            f"importing the function modules took longer than {timeout_s:g} s "
            "(--import-timeout); the importing process was killed"
        ) from None
    finally:
        await _end(proc)
        helpers.untrack(proc.pid)
    return _registry_of(answer, stderr, proc.returncode)


def _registry_of(answer: bytes, stderr: bytes, returncode: int | None) -> Registry:
    try:
        document = json.loads(answer)
        if "error" in document:
            raise ImportError(document["error"])
        return registry_from(document["functions"])
    except (ValueError, KeyError, TypeError) as exc:  # it died, or wrote something else
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ImportError(
            f"the process importing the function modules failed (exit status {returncode})"
            + (f": {' / '.join(tail)}" if tail else "")
        ) from exc


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    assert stream is not None
    data = bytearray()
    while chunk := await stream.read(65536):
        data += chunk
        if len(data) > limit:
            raise ImportError(f"the description of the function modules is over {limit} bytes")
    return bytes(data)


async def _read_tail(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    assert stream is not None
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-limit:]
    return tail


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Kill the importer (and whatever its import started) unless it has exited."""
    if proc.returncode is None:
        _kill_group(proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _KILL_WAIT_S)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the importer and what its import started, unless it was reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: its pid is the group's
