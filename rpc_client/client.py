"""``NodeClient``: one node, its kept connection, every procedure of the contract.

Each request carries its own client-side timeout: the wait the node was asked for plus
a margin, so a node that never answers is detected here, not by TCP.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from rpc_client import protocol, transport
from rpc_client.errors import (
    ConnectionLost,
    NodeTimeout,
    NodeUnreachable,
    ProtocolError,
    RPCError,
    TLSError,
    WrongNode,
    remote_error_from_wire,
)
from rpc_client.logs import event
from rpc_client.protocol import CallState, FncId
from rpc_client.tls import TLSConfig
from rpc_client.transport import Answer, CannotConnect, Endpoint, Pool

log = logging.getLogger("rpc_client.client")

_MAX_ANSWER_PREVIEW = 200
#: what the transport raises besides RPCError (see rpc_client.transport)
_LOWER_ERRORS = (TimeoutError, OSError, transport.MalformedAnswer, transport.AnswerTooLarge)


def _tls_failure(exc: Exception) -> str:
    """A failed handshake in words, with the likely mistake where one is known."""
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text.lower():
        return (
            "TLS handshake failed: the node does not speak TLS on this port (started "
            "without --tls-cert?); leave out --tls-cert, --tls-key and --tls-ca"
        )
    return f"TLS handshake failed: {text}"


@dataclass(frozen=True, kw_only=True)
class ClientTimeouts:
    """Client-side bounds of a request, in seconds."""

    connect_s: float = 5.0
    #: added to the server-side wait asked for, for the request's own timeout
    margin_s: float = 5.0
    #: the bound of requests that do not wait (Identify, ListFunctions, ...)
    quick_s: float = 10.0
    #: the bound of AbortFunction, which answers once the process has ended
    abort_s: float = 60.0


DEFAULT_TIMEOUTS = ClientTimeouts()


class NodeClient:
    """An async client of one ganeti-noded; use it as an async context manager.

    With ``expected_uuid``, the node's Identify is checked before the first request and
    again after any transport error (a new connection may reach another machine), and
    :class:`WrongNode` is raised on a mismatch.
    """

    def __init__(
        self,
        address: str,
        port: int = protocol.DEFAULT_PORT,
        *,
        name: str | None = None,
        timeouts: ClientTimeouts = DEFAULT_TIMEOUTS,
        expected_uuid: str | None = None,
        tls: TLSConfig | None = None,
        pool: Pool | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``pool``: connections shared with other clients (a Cluster's), not closed
        here; ``ssl_context``: ``tls``'s context, made once for many clients."""
        self._ssl = (ssl_context or tls.client_context()) if tls else None
        # one certificate per node: it must carry the node's name (or the name given)
        server_name = (tls.server_name or name or address) if tls and tls.verify_name else None
        self._endpoint = Endpoint(address, port, self._ssl, server_name)
        self.base_url = f"{'https' if tls else 'http'}://{self._endpoint.authority}"
        self.name = name or self._endpoint.authority
        self.timeouts = timeouts
        self.expected_uuid = expected_uuid
        self._verified = False
        self._pool = pool or Pool()
        self._own_pool = pool is None

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections to the node (a shared pool is its owner's to close)."""
        if self._own_pool:
            await self._pool.close()

    # --- procedures -------------------------------------------------------------

    async def start_function(
        self,
        fn_name: str,
        fn_args: dict[str, Any] | None = None,
        *,
        timeout: float,
        abort_after: float | None = None,
        request_id: str | None = None,
        request_timeout_s: float | None = None,
    ) -> CallState:
        """StartFunction: start ``fn_name`` and wait up to ``timeout`` seconds for it."""
        body = protocol.StartFunctionRequest(
            fn_name=fn_name,
            fn_args=fn_args or {},
            timeout=timeout,
            abort_after=abort_after,
            request_id=request_id,
        ).to_wire()
        answer = await self.call(
            protocol.START_FUNCTION, body, self._wait_bound(timeout, request_timeout_s)
        )
        return self._call_state(answer)

    async def wait_for_function(
        self,
        fnc_id: str,
        *,
        timeout: float,
        output_from: int | None = None,
        request_timeout_s: float | None = None,
    ) -> CallState:
        """WaitForFunction: wait up to ``timeout`` seconds for the call to finish; with
        ``output_from``, also until output past that position, which the state's
        ``output`` then carries.

        A malformed ``fnc_id`` raises :class:`BadRequest` here, as the node would."""
        request = protocol.WaitForFunctionRequest(FncId.parse(fnc_id), timeout, output_from)
        body = request.to_wire()
        answer = await self.call(
            protocol.WAIT_FOR_FUNCTION, body, self._wait_bound(timeout, request_timeout_s)
        )
        return self._call_state(answer, of=body["fnc_id"])

    async def abort_function(self, fnc_id: str) -> CallState:
        """AbortFunction: kill the call's processes; its state once they ended."""
        body = protocol.AbortFunctionRequest(FncId.parse(fnc_id)).to_wire()
        answer = await self.call(protocol.ABORT_FUNCTION, body, self.timeouts.abort_s)
        return self._call_state(answer, of=body["fnc_id"])

    async def list_functions(self) -> list[dict[str, Any]]:
        """ListFunctions: running and retained calls."""
        answer = await self.call(protocol.LIST_FUNCTIONS, {}, self.timeouts.quick_s)
        return self._field(answer, "functions", list)

    async def identify(self) -> dict[str, Any]:
        """Identify: name, uuid, pid, version, started, boot_id."""
        return await self._request(protocol.IDENTIFY, {}, self.timeouts.quick_s)

    async def describe_functions(self) -> dict[str, Any]:
        """DescribeFunctions: every function's doc and parameter schema."""
        answer = await self.call(protocol.DESCRIBE_FUNCTIONS, {}, self.timeouts.quick_s)
        return self._field(answer, "functions", dict)

    async def reload_functions(self) -> dict[str, Any]:
        """ReloadFunctions (1.1): the node re-imports its function modules; answers
        ``{"reloaded", "error", "functions"}``."""
        return await self.call(protocol.RELOAD_FUNCTIONS, {}, self.timeouts.abort_s)

    # --- the wire -----------------------------------------------------------------

    async def call(
        self, procedure: str, body: dict[str, Any], request_timeout_s: float
    ) -> dict[str, Any]:
        """PUT one procedure; the JSON answer, or the mapped :class:`RPCError`."""
        if self.expected_uuid is not None and not self._verified:
            await self._verify_identity()
        return await self._request(procedure, body, request_timeout_s)

    async def _verify_identity(self) -> None:
        who = await self.identify()
        if who.get("uuid") != self.expected_uuid:
            raise WrongNode(
                f"expected the node with uuid {self.expected_uuid}, but {self.base_url} is "
                f"{who.get('name')!r} with uuid {who.get('uuid')}",
                node=self.name,
            )
        self._verified = True

    async def _request(
        self, procedure: str, body: dict[str, Any], request_timeout_s: float
    ) -> dict[str, Any]:
        try:
            answer = await self._pool.request(
                self._endpoint,
                f"/{procedure}",
                protocol.dumps(body),
                timeout_s=request_timeout_s,
                connect_s=self.timeouts.connect_s,
                content_type=protocol.JSON_CONTENT_TYPE,
            )
        except _LOWER_ERRORS as exc:
            raise self.mapped_error(exc, procedure, request_timeout_s) from exc
        return self._decode(answer)

    def _decode(self, answer: Answer) -> dict[str, Any]:
        try:
            decoded = protocol.loads(answer.body)
        except ValueError:
            preview = answer.body[:_MAX_ANSWER_PREVIEW]
            raise ProtocolError(
                f"HTTP {answer.status} answer is not JSON: {preview!r}", node=self.name
            ) from None
        if answer.status != 200:
            raise remote_error_from_wire(
                answer.status,
                decoded,
                node=self.name,
                retry_after=answer.headers.get("retry-after"),
            )
        if not isinstance(decoded, dict):
            raise ProtocolError("answer is not a JSON object", node=self.name)
        return decoded

    def mapped_error(self, exc: Exception, procedure: str, timeout_s: float) -> RPCError:
        """The one place where the transport's and the OS's errors become
        :class:`RPCError` (raise it from ``exc``)."""
        self._verified = False  # the next request may go over a new connection
        return self._transport_error(procedure, timeout_s, exc)

    def _transport_error(self, procedure: str, timeout_s: float, exc: Exception) -> RPCError:
        if isinstance(exc, transport.ConnectTimeout | transport.PoolTimeout):
            return NodeTimeout(f"{procedure}: {exc}", node=self.name)
        if isinstance(exc, TimeoutError):
            return NodeTimeout(f"{procedure}: no answer within {timeout_s:g} s", node=self.name)
        if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
            # a certificate did not verify, on either side
            return TLSError(f"{procedure}: {_tls_failure(exc)}", node=self.name)
        if isinstance(exc, CannotConnect):  # refused, unresolvable, no route
            return NodeUnreachable(f"{procedure}: {self._unreachable(exc)}", node=self.name)
        if isinstance(exc, OSError):  # reset, closed
            return ConnectionLost(
                f"{procedure}: connection lost after the request was sent: "
                f"{self._lost_words(exc)}{self._lost_hint()}",
                node=self.name,
            )
        # not HTTP, or too much of it
        return ProtocolError(f"{procedure}: {exc}", node=self.name)

    def _lost_words(self, exc: OSError) -> str:
        """How the connection was lost (a master's client names the master)."""
        return str(exc)

    def _lost_hint(self) -> str:
        # With TLS 1.3 a node checks our certificate after our side of the handshake,
        # and its alert is usually lost to the reset that follows.
        if self._ssl is not None:
            return (
                " (over TLS this is also how a node refuses a client certificate that its "
                "--tls-ca did not sign, or that expired)"
            )
        return (
            " (if the node speaks TLS, this is what plain HTTP to it looks like: "
            "give --tls-cert, --tls-key and --tls-ca)"
        )

    def _unreachable(self, exc: CannotConnect) -> str:
        where = f"{exc.host}:{exc.port}"
        if isinstance(exc.os_error, ConnectionRefusedError):
            return (
                f"nothing listens at {where} (connection refused): check that ganeti-noded "
                "runs there and on which port (--port, 1811 by default)"
            )
        reason = exc.os_error.strerror or str(exc.os_error)
        return f"cannot reach {where}: {reason}"

    def _wait_bound(self, wait_s: float, override_s: float | None) -> float:
        return override_s if override_s is not None else wait_s + self.timeouts.margin_s

    def _call_state(self, answer: dict[str, Any], *, of: str | None = None) -> CallState:
        """The call state of an answer; with ``of``, it must be that call's (a node that
        answers about another call is broken or hostile: never take its word)."""
        try:
            state = CallState.from_wire(answer)
        except ValueError as exc:
            event(log, "client.bad_call_state", logging.WARNING, node=self.name, fnc_id=of,
                  error=str(exc))  # fmt: skip
            raise ProtocolError(f"bad call state: {exc}", node=self.name) from exc
        if of is not None and state.fnc_id != of:
            event(log, "client.answer_about_another_call", logging.WARNING, node=self.name,
                  fnc_id=of, answered_fnc_id=state.fnc_id)  # fmt: skip
            raise ProtocolError(
                f"asked about call {of}, the node answered about call {state.fnc_id}",
                node=self.name,
            )
        return state

    def _field(self, answer: dict[str, Any], name: str, kind: type) -> Any:
        value = answer.get(name)
        if not isinstance(value, kind):
            raise ProtocolError(f"answer lacks a {kind.__name__} {name!r}", node=self.name)
        return value
