"""What a function process does so that every process its call starts can be found
(noded.process.tree), whatever it does: fork, ``setsid``, ``setpgid``, exec or not.

* It makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a process of
  the call whose parent dies is re-parented to it, not to init, so the call's processes
  stay its descendants for as long as it runs.  Those adopted become zombies when they
  end, until it ends too (then init reaps them).
* It writes the call's mark into its environment *in place*: into the block the kernel
  shows as ``/proc/PID/environ``, where the daemon put a blank placeholder of
  :data:`PLACEHOLDER_CHARS` characters when it started the process.  A process forked
  from it without exec shows the mark there too (``os.putenv`` would only change the C
  library's copy, which ``/proc`` shows only after an exec).  A program exec'd inherits
  it as usual.  Without the placeholder (the process was not started by the daemon) the
  mark is set with ``os.putenv``: then only exec'd programs show it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

#: the width of the blank value the daemon puts in a function process's environment
#: (a mark, "pid:start ticks", is at most 28 characters)
PLACEHOLDER_CHARS = 40
PLACEHOLDER = "." * PLACEHOLDER_CHARS
#: prctl option: be the reaper of orphaned descendants (linux/prctl.h)
_PR_SET_CHILD_SUBREAPER = 36


def hold_orphans() -> bool:
    """Make this process the reaper of its orphaned descendants; False if it cannot."""
    libc = _libc()
    return libc is not None and libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def publish_mark(name: str, mark: str) -> None:
    """Set environment variable ``name`` to ``mark`` where ``/proc`` shows it, in place
    when the placeholder is there (``mark`` "" blanks it); else with ``os.putenv``.
    ``os.environ`` says it too, so that a program started with ``env=os.environ`` (or a
    copy) inherits it."""
    _set_python_environ(name, mark)
    address = _placeholder_address(name)
    if address is None or len(mark) > PLACEHOLDER_CHARS - 2:
        os.putenv(name, mark)
        return
    # The value, its end, then filler: /proc readers (psutil) skip a string without "=",
    # and stop at two NULs in a row, so the filler is never empty.
    value = mark.encode() + b"\0" + b"." * (PLACEHOLDER_CHARS - len(mark) - 1)
    ctypes.memmove(address, value, PLACEHOLDER_CHARS)


def _set_python_environ(name: str, mark: str) -> None:
    # os.environ's own mapping, without the putenv() that os.environ[name] = mark would
    # also make (it would move the C library's entry out of the block /proc shows)
    environ = os.environ
    with contextlib.suppress(AttributeError, TypeError):
        environ._data[environ.encodekey(name)] = environ.encodevalue(mark)  # type: ignore[attr-defined]


def _placeholder_address(name: str) -> int | None:
    """Where the value of ``name`` lies, if it lies in the environment block the kernel
    shows (not in a copy ``putenv`` made) and is the placeholder's width."""
    libc = _libc()
    if libc is None:
        return None
    address = libc.getenv(name.encode())
    block = _environment_block()
    if not address or block is None or not block[0] <= address < block[1]:
        return None
    end = address + PLACEHOLDER_CHARS
    if end >= block[1] or ctypes.string_at(end, 1) != b"\0":
        return None
    return int(address)


@functools.cache  # the same in a forked child: the fork server reads it for them all
def _environment_block() -> tuple[int, int] | None:
    """``(env_start, env_end)`` of this process, from /proc/self/stat (fields 50, 51)."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            line = stat.read()
        fields = line[line.rfind(b")") + 2 :].split()
        return int(fields[47]), int(fields[48])
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own: libc is in it
    except OSError:
        return None
    libc.getenv.restype = ctypes.c_void_p
    libc.getenv.argtypes = [ctypes.c_char_p]
    libc.prctl.restype = ctypes.c_int
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]  # fmt: skip
    return libc
