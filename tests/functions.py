"""Functions the test daemons load with ``--functions tests.functions``."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from typing import Any

from noded import function


@function
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@function
def typed(
    i: int, f: float, s: str, b: bool, items: list, mapping: dict, maybe: str | None = None
) -> dict[str, Any]:
    """Return every argument, to check the annotations' JSON checks."""
    return {"i": i, "f": f, "s": s, "b": b, "items": items, "mapping": mapping, "maybe": maybe}


@function
def fail(message: str) -> None:
    """Raise RuntimeError(message)."""
    raise RuntimeError(message)


@function
def exit_now(code: int) -> None:
    """Leave at once with the exit status code, writing no result."""
    sys.stderr.write(f"exiting with {code}\n")
    sys.stderr.flush()
    os._exit(code)


@function
def kill_self(sig: int) -> None:
    """Die by a signal."""
    os.kill(os.getpid(), sig)
    time.sleep(10)


@function
def write_frame(data: str) -> None:
    """Write raw bytes where the result frame goes, then leave."""
    from noded.process.child import runner

    os.write(runner.frame_fd, data.encode())
    os._exit(0)


@function
def answer_and_linger(value: Any) -> None:
    """Write a result frame, then stay (a function that forgot to return)."""
    from noded.process.child import frames, runner

    os.write(runner.frame_fd, frames.encode_result(value))
    time.sleep(60)


@function
def noisy(value: Any) -> Any:
    """Print to stdout at Python and fd level, and from a child; return value."""
    print("printed by the function")
    sys.stdout.flush()
    os.write(1, b"written to fd 1\n")
    subprocess.run(["echo", "from a child process"], check=True)
    return value


@function
def whoami() -> dict[str, int]:
    """The process's pid, session, group and parent."""
    return {"pid": os.getpid(), "sid": os.getsid(0), "pgid": os.getpgid(0), "ppid": os.getppid()}


@function
def sleep_then(seconds: float, value: Any = None) -> Any:
    """Sleep, then return value."""
    time.sleep(seconds)
    return value


@function
def with_grandchildren(count: int, pid_file: str, ignore_term: bool = False) -> None:
    """Start ``count`` grandchildren in this process group, note their pids, sleep long."""
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kids = [subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL) for _ in range(count)]
    with open(pid_file + ".tmp", "w") as out:
        out.write("\n".join(str(kid.pid) for kid in kids))
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(300)


@function
def ignore_sigterm(seconds: float, ready_path: str | None = None) -> float:
    """Ignore SIGTERM (then create ``ready_path``, if given), then sleep."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ready_path:
        open(ready_path, "w").close()
    time.sleep(seconds)
    return seconds


@function
def big(size: int) -> str:
    """A string result of ``size`` characters."""
    return "x" * size


@function
def stderr_then_exit(size: int, code: int) -> None:
    """Write ``size`` bytes to stderr, ending in 'END', then exit with code."""
    sys.stderr.write("a" * max(0, size - 3) + "END")
    sys.stderr.flush()
    os._exit(code)


@function
def count_run(path: str, value: Any = None) -> Any:
    """Append a line to path (counting executions), then return value."""
    with open(path, "a") as out:
        out.write("run\n")
    return value


@function
def leave_stdout_open() -> str:
    """Return at once, leaving a grandchild that holds stdout open for a while."""
    from noded.process.child import runner

    subprocess.Popen(["sleep", "3"], stdout=runner.frame_fd, start_new_session=False)
    return "done"


@function
async def async_echo(value: Any) -> Any:
    """An async function."""
    import asyncio

    await asyncio.sleep(0)
    return value


@function
def closes_the_result_channel() -> int:
    """Close fd 3, where the result would go."""
    os.close(3)
    return 1


@function
def unserialisable() -> Any:
    """Return something that is not JSON."""
    return {1, 2}


@function
def environment_variable(name: str) -> str | None:
    """The value of an environment variable in the function process, or None."""
    return os.environ.get(name)


@function
def node_behaviour(count_path: str | None = None) -> str:
    """Behave as the daemon's environment says: TEST_DELAY_S, TEST_FAIL; return TEST_NAME."""
    if count_path:
        with open(count_path, "a") as out:
            out.write(os.environ.get("TEST_NAME", "?") + "\n")
    time.sleep(float(os.environ.get("TEST_DELAY_S", "0")))
    if os.environ.get("TEST_FAIL"):
        raise OSError(f"disk failed on {os.environ.get('TEST_NAME')}")
    return os.environ.get("TEST_NAME", "?")


class DiskFull(Exception):
    """A declared error that masters may register."""


@function
def fill_disk() -> None:
    """Raise DiskFull."""
    raise DiskFull("no space left on /srv")


_CALLS_IN_THIS_PROCESS = 0


@function
def count_in_module() -> int:
    """Count calls in module state: 1 every time when each call is a fresh process."""
    global _CALLS_IN_THIS_PROCESS
    _CALLS_IN_THIS_PROCESS += 1
    return _CALLS_IN_THIS_PROCESS


@function
def print_lines(count: int, delay_s: float = 0.0, stream: str = "stdout") -> int:
    """Print ``count`` lines ``line N``, ``delay_s`` apart, to stdout or stderr."""
    out = sys.stdout if stream == "stdout" else sys.stderr
    for n in range(count):
        print(f"line {n}", file=out)
        time.sleep(delay_s)
    return count


@function
def stdout_buffering() -> dict[str, bool]:
    """How the function process's stdout is buffered."""
    out = sys.stdout
    assert isinstance(out, io.TextIOWrapper)  # as the runner set it up
    return {"line_buffering": out.line_buffering, "write_through": out.write_through}


@function
def print_then_fail(text: str) -> None:
    """Print ``text`` to stdout and to stderr, then raise."""
    print(text)
    print(text, file=sys.stderr)
    raise RuntimeError("failed after printing")


@function
def flood(megabytes: float) -> int:
    """Write ``megabytes`` MiB to stdout as fast as the pipe takes it, then return."""
    chunk = (b"0123456789abcdef" * 4096)[: 1 << 16]
    total = int(megabytes * (1 << 20))
    written = 0
    while written < total:
        written += os.write(1, chunk[: total - written])
    return written


@function
def report_progress(count: int) -> int:
    """Report progress ``count`` times as fast as it can, the last at 1.0."""
    from noded import progress

    for n in range(1, count + 1):
        progress(n / count, f"{n} of {count}")
    return count


@function
def paced_progress(count: int, every_s: float) -> int:
    """Report progress ``count`` times, one every ``every_s``, the last at 1.0."""
    from noded import progress

    for n in range(1, count + 1):
        progress(n / count, f"{n} of {count}")
        time.sleep(every_s)
    return count


@function
def flood_progress(seconds: float) -> int:
    """Write progress lines straight to fd 3 (not through the coalescing ``progress()``)
    as fast as the pipe takes them, for ``seconds``; return how many."""
    lines = b'{"progress": {"fraction": 0.5, "message": "flooding", "at": 1.0}}\n' * 64
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        os.write(3, lines)
        count += 64
    return count


@function
def progress_while_returning(megabytes: float) -> str:
    """Return a string of ``megabytes`` MiB while another thread reports progress without
    pause (so reports are being sent as the result frame is written)."""
    import threading

    from noded import progress

    def report() -> None:
        n = 0
        while True:
            n += 1
            progress(None, f"report {n}")

    threading.Thread(target=report, daemon=True).start()
    time.sleep(0.1)
    return "x" * int(megabytes * (1 << 20))


@function
def child_sees_fd3() -> str:
    """What a program the function starts (keeping its descriptors) has as fd 3."""
    done = subprocess.run(
        ["sh", "-c", "readlink /proc/$$/fd/3 || true"], close_fds=False, capture_output=True
    )
    return done.stdout.decode().strip()


@function(limits={"memory_mb": 256})
def allocate(megabytes: int) -> int:
    """Allocate ``megabytes`` MiB (its own limit: 256 MiB)."""
    return len(bytearray(megabytes * 1024 * 1024))


@function
def spin(seconds: float) -> int:
    """Keep a CPU busy for ``seconds`` of wall time; the loops made."""
    end, loops = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        loops += 1
    return loops


@function
def open_many(count: int) -> int:
    """Open /dev/null ``count`` times."""
    files = [open(os.devnull) for _ in range(count)]  # noqa: SIM115
    return len(files)


@function(limits={"memory_mb": 200})
def spread_memory(children: int, megabytes: int, seconds: float = 60) -> int:
    """Fork ``children`` that each hold ``megabytes`` MiB (every page written), wait until
    all hold it, keep it ``seconds``; how many managed (its limit: 200 MiB a call)."""
    reader, writer = os.pipe()
    kids = []
    for _ in range(children):
        kid = os.fork()
        if kid == 0:
            held = b"x" * (megabytes * 1024 * 1024)  # noqa: F841 (held while it sleeps)
            os.write(writer, b"+")
            time.sleep(seconds)
            os._exit(0)
        kids.append(kid)
    os.close(writer)
    holding = 0
    while holding < children and os.read(reader, 1):
        holding += 1
    time.sleep(seconds)
    for kid in kids:
        os.waitpid(kid, 0)
    return holding


@function
def fork_many(count: int, seconds: float = 60) -> int:
    """Fork ``count`` children that sleep ``seconds``; how many forks succeeded."""
    made = 0
    for _ in range(count):
        try:
            if os.fork() == 0:
                time.sleep(seconds)
                os._exit(0)
        except BlockingIOError:
            raise
        made += 1
    time.sleep(seconds)
    return made


@function
def escape(pid_file: str, seconds: float = 300) -> None:
    """Start a grandchild in a session of its own and one in a process group of its own
    (what a shell with job control does), note their pids, then sleep."""
    kids = [
        subprocess.Popen(["sleep", "300"], start_new_session=True),
        subprocess.Popen(["sleep", "300"], process_group=0),
    ]
    with open(pid_file + ".tmp", "w") as out:
        out.write(" ".join(str(kid.pid) for kid in kids))
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(seconds)


@function
def escape_by_fork(pid_file: str, seconds: float = 300, ignore_term: bool = False) -> None:
    """Fork a child that calls setsid and sleeps, without exec; double-fork one that calls
    setsid and execs ``sleep`` (its parent gone at once); note their pids, then sleep."""
    reader, writer = os.pipe()
    if os.fork() == 0:  # stays Python: its environment in /proc is what it inherited
        os.setsid()
        if ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(writer, f"{os.getpid()}\n".encode())
        time.sleep(seconds)
        os._exit(0)
    middle = os.fork()
    if middle == 0:
        if os.fork() == 0:
            os.setsid()
            os.write(writer, f"{os.getpid()}\n".encode())
            os.execvp("sleep", ["sleep", str(int(seconds))])
        os._exit(0)
    os.waitpid(middle, 0)
    os.close(writer)
    with os.fdopen(reader) as lines:
        kids = [lines.readline().strip(), lines.readline().strip()]
    with open(pid_file + ".tmp", "w") as out:
        out.write(" ".join(kids))
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(seconds)


@function
def service_restart(name: str, path: str) -> str:
    """Append ``name`` to path (counting executions), as a restart of it would be."""
    with open(path, "a") as out:
        out.write(f"{name}\n")
    return f"restarted {name}"


@function
def count_concurrent(directory: str, seconds: float) -> int:
    """Mark this call running in ``directory`` for ``seconds``; return how many calls
    (this one too) were running when it started."""
    mark = os.path.join(directory, str(os.getpid()))
    open(mark, "w").close()
    try:
        running = len(os.listdir(directory))
        time.sleep(seconds)
    finally:
        os.unlink(mark)
    return running


@function
def mark_seen() -> dict[str, Any]:
    """The call mark a program this function starts inherits, and this process's own."""
    from noded.process.child.frames import CALL_MARK, call_mark, start_ticks

    shown = subprocess.run(["sh", "-c", f"echo ${CALL_MARK}"], capture_output=True, text=True)
    return {"inherited": shown.stdout.strip(), "own": call_mark(os.getpid(), start_ticks())}


@function
def mark_in_proc() -> dict[str, Any]:
    """The call mark /proc shows for a child forked without exec, and this process's own."""
    from noded.process.child.frames import CALL_MARK, call_mark, start_ticks

    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.read(reader, 1)
        os._exit(0)
    try:
        with open(f"/proc/{child}/environ", "rb") as environ:
            block = environ.read()
    finally:
        os.write(writer, b"x")
        os.waitpid(child, 0)
    shown = [entry.split(b"=", 1)[1].decode() for entry in block.split(b"\0")
             if entry.startswith(CALL_MARK.encode() + b"=")]  # fmt: skip
    passed_on = subprocess.run(["sh", "-c", f"echo ${CALL_MARK}"], env=dict(os.environ),
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
    own = call_mark(os.getpid(), start_ticks())
    return {"shown": shown, "own": own, "environ": os.environ.get(CALL_MARK), "env": passed_on}


@function
def soak_tally(path: str, seconds: float, value: Any = None) -> Any:
    """Mark one run in ``path`` first, then take ``seconds``: a run that a crash cuts short
    still shows, so a second run of the same call is seen (the chaos soak)."""
    with open(path, "a") as out:
        out.write("run\n")
    time.sleep(seconds)
    return value
