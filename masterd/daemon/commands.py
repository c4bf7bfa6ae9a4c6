"""Running master commands for CallMaster: ``async def`` on the loop, plain functions in
a bounded set of worker threads, each within the request's ``timeout``.

A command that raised is an answer, not a request error: ``{"result": null, "error":
{"type", "message", "traceback"}}`` with its exception's class name as ``type``.  A
command past its timeout is ``CommandTimeout``; a coroutine is cancelled then, a thread
cannot be and runs on (holding its worker) until its function returns.  The workers are
daemon threads, so that such a function never holds masterd's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import traceback
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from masterd.commands import CommandSpec
from rpc_client import protocol
from rpc_client.errors import CommandTimeout

Answer = dict[str, Any]


class CommandRunner:
    """Runs commands; at most ``max_threads`` plain ones at once (more wait for a worker,
    within their timeout)."""

    def __init__(self, max_threads: int, counter: Counter | None = None) -> None:
        self.max_threads = max_threads
        self._counter = counter  # by command and outcome
        self._workers: asyncio.Semaphore | None = None

    async def run(self, spec: CommandSpec, kwargs: dict[str, Any], timeout_s: float) -> Answer:
        """The command's answer; raises ``CommandTimeout`` past ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                if spec.is_async:
                    answer = await _on_loop(spec, kwargs)
                else:
                    answer = await self._in_thread(spec, kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise
            self._count(spec, "timeout")
            raise CommandTimeout(
                f"master command {spec.name}() did not finish within its timeout of {timeout_s:g} s"
            ) from None
        self._count(spec, "ok" if answer["error"] is None else "error")
        return answer

    def _count(self, spec: CommandSpec, outcome: str) -> None:
        if self._counter is not None:
            self._counter.labels(spec.name, outcome).inc()

    async def _in_thread(self, spec: CommandSpec, kwargs: dict[str, Any]) -> Answer:
        if self._workers is None:
            self._workers = asyncio.Semaphore(self.max_threads)
        await self._workers.acquire()  # released when the thread ends, not when we stop waiting
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Answer] = loop.create_future()

        def work() -> None:
            answer = _raised(RuntimeError(f"the thread of {spec.name}() stopped"))
            try:
                answer = _answer_of(spec, lambda: spec.func(**kwargs))
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is closed: masterd stopped
                    loop.call_soon_threadsafe(self._finished, done, answer)

        try:
            threading.Thread(target=work, name=f"command-{spec.name}", daemon=True).start()
        except BaseException:
            self._workers.release()
            raise
        return await done

    def _finished(self, done: asyncio.Future[Answer], answer: Answer) -> None:
        assert self._workers is not None
        self._workers.release()
        if not done.done():
            done.set_result(answer)


async def _on_loop(spec: CommandSpec, kwargs: dict[str, Any]) -> Answer:
    try:
        result = await spec.func(**kwargs)
    except (Exception, SystemExit) as exc:
        return _raised(exc)
    return _answer_of(spec, lambda: result)


def _answer_of(spec: CommandSpec, call: Callable[[], Any]) -> Answer:
    """Call, and the answer: the result if JSON can carry it, else what went wrong."""
    try:
        result = call()
    except (Exception, SystemExit) as exc:
        return _raised(exc)
    try:
        protocol.dumps(result)
    except TypeError as exc:
        return _raised(TypeError(f"{spec.name}() returned a value JSON cannot carry: {exc}"))
    return {"result": result, "error": None}


def _raised(exc: BaseException) -> Answer:
    error = {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    return {"result": None, "error": error}
