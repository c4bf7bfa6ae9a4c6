"""The link to the masters: one request to whichever master answers.

It starts with a random master of the list and keeps the one that answers; a master that
cannot be reached, does not answer in time or answers ``503`` (its store is down, or it
is busy) makes it try the next, each once per request.  Only when none answers is the
request a :class:`NodeUnreachable`.  Other error answers are the contract's errors
(:func:`remote_error_from_wire`), raised as they are: the next master would say the same.

Over TLS with the node's own certificate when the node serves TLS.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from typing import Any

import aiohttp
import orjson

from rpc_client.errors import NodeUnreachable, RPCError, remote_error_from_wire
from rpc_client.logs import event

log = logging.getLogger("noded.master")

#: the longest wait for a master to accept a connection
CONNECT_TIMEOUT_S = 3.0
#: the largest answer read from a master
MAX_ANSWER_BYTES = 64 * 2**20


class MasterLink:
    """Requests to the first of ``masters`` that answers."""

    def __init__(self, masters: tuple[str, ...], ssl_context: ssl.SSLContext | None) -> None:
        if not masters:
            raise ValueError("a master link needs at least one master")
        self.masters = masters
        self._current = random.randrange(len(masters))
        self._ssl = ssl_context
        self._scheme = "https" if ssl_context is not None else "http"
        self._session: aiohttp.ClientSession | None = None

    @property
    def current(self) -> str:
        """The master tried first: the last one that answered."""
        return self.masters[self._current]

    async def request(self, procedure: str, body: dict[str, Any], timeout_s: float) -> Any:
        """``procedure``'s answer from the first master that gives one within
        ``timeout_s`` in all; raises :class:`NodeUnreachable` if none does, or the error
        a master answered."""
        deadline = time.monotonic() + timeout_s
        failures = []
        for _ in range(len(self.masters)):
            master = self.current
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            try:
                return await self._ask(master, procedure, body, left_s)
            except (NodeUnreachable, _Unavailable) as exc:
                failures.append(f"{master}: {exc}")
                self._move_on(master, exc)
        # "within" only when the time ran out: a refused connection fails at once
        within = f" within {timeout_s:g} s" if time.monotonic() >= deadline else ""
        raise NodeUnreachable(f"no master answered {procedure}{within} ({'; '.join(failures)})")

    def learn(self, masters: object) -> None:
        """Add the masters a Register answer lists (several masterds on one store) after
        those given; an address that is not ``HOST:PORT``, or is a wildcard, is skipped."""
        if not isinstance(masters, list):
            return
        known = list(self.masters)
        for master in masters:
            if isinstance(master, str) and master not in known and _reachable_form(master):
                known.append(master)
        if len(known) > len(self.masters):
            event(log, "master.learned", masters=known[len(self.masters) :])
            self.masters = tuple(known)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _move_on(self, master: str, exc: Exception) -> None:
        self._current = (self._current + 1) % len(self.masters)
        if len(self.masters) > 1:
            event(log, "master.failover", logging.WARNING, master=master, next=self.current,
                  error=str(exc))  # fmt: skip

    async def _ask(self, master: str, procedure: str, body: dict[str, Any], left_s: float) -> Any:
        timeout = aiohttp.ClientTimeout(total=left_s, sock_connect=min(CONNECT_TIMEOUT_S, left_s))
        try:
            async with self._client().put(
                f"{self._scheme}://{master}/{procedure}",
                data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
                ssl=self._ssl if self._ssl is not None else True,
            ) as response:
                payload = await response.content.read(MAX_ANSWER_BYTES)
                return _answer(response.status, payload, response.headers.get("Retry-After"),
                               master)  # fmt: skip
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise NodeUnreachable(self._what_failed(exc, left_s)) from exc

    def _what_failed(self, exc: BaseException, left_s: float) -> str:
        """Why a master gave no answer, in words, with the likely mistake where one is
        known (the master is not running, or one side speaks TLS and the other not)."""
        if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError | ssl.SSLError):
            text = str(getattr(exc, "os_error", exc))
            if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text.lower():
                return ("TLS handshake failed: the master does not speak TLS on this port "
                        "(this node talks TLS because it serves TLS; start ganeti-masterd "
                        "with --tls-cert, --tls-key and --tls-ca)")  # fmt: skip
            return f"TLS handshake failed: {text}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            if isinstance(exc.os_error, ConnectionRefusedError):
                return ("connection refused: nothing listens there (is ganeti-masterd "
                        "running, on that port?)")  # fmt: skip
            return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            return f"no answer within {left_s:.3g} s"
        if isinstance(exc, aiohttp.ServerDisconnectedError) and self._ssl is None:
            return ("the connection was closed without an answer (if the master serves TLS, "
                    "this is what plain HTTP to it looks like: this node talks TLS only when "
                    "it serves TLS, with --tls-cert, --tls-key and --tls-ca)")  # fmt: skip
        return f"{type(exc).__name__}: {exc}"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=8, enable_cleanup_closed=True),
                json_serialize=lambda value: orjson.dumps(value).decode(),
            )
        return self._session


class _Unavailable(RPCError):
    """A master answered 503: try the next."""

    def __init__(self, error: RPCError) -> None:
        super().__init__(str(error))
        self.error = error


def _answer(status: int, payload: bytes, retry_after: str | None, master: str) -> Any:
    """The answer's body, or its error raised (503: :class:`_Unavailable`)."""
    try:
        body = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        body = None
    if status == 200:
        if not isinstance(body, dict):
            raise NodeUnreachable(f"an answer that is not a JSON object from {master}")
        return body
    # the master is named by the log line or the failure list, not as a "node"
    error = remote_error_from_wire(status, body, retry_after=retry_after)
    if status == 503:
        raise _Unavailable(error)
    raise error


def _reachable_form(address: str) -> bool:
    host, _, port = address.rpartition(":")
    wildcard = host in ("0.0.0.0", "[::]", "::", "")
    return not wildcard and port.isdigit() and 0 < int(port) <= 65535
