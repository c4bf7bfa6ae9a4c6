"""The relay of ``call_master``: a function asks the node's daemon, which asks a master.

Why a unix socket of its own rather than the frame channel: fd 3 is one-way (the
daemon only reads it, and a function's result is its last line), and ``call_master``
needs an answer.  A socketpair in place of the fd-3 pipe would change how every process
is made, for every call, by both spawners; a socket the daemon listens on changes
nothing there and costs only the calls that use it.  It is ``master.sock`` in the state
directory (mode 0600, in a 0700 directory), or, where that path is too long for a unix
socket, an abstract socket named after the node's uuid; either way a connection from
another user is refused (``SO_PEERCRED``), and the caller's pid names its call.

One request a connection, one JSON line each way.  The function sends
``{"command", "args", "timeout"}``; the daemon answers CallMaster's answer
``{"answer": {"result", "error"}}``, or ``{"raise": {"type", "message"}}`` with the
error type of a request error or of ``NodeUnreachable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

from noded.master.link import MasterLink
from rpc_client.errors import RemoteError, RPCError
from rpc_client.logs import event
from rpc_client.master_protocol import CALL_MASTER, CallMasterRequest

log = logging.getLogger("noded.master")

#: the environment variable that tells a function process where the relay listens
#: (``@NAME`` for an abstract socket)
RELAY_ENV: Final = "NODED_MASTER_SOCKET"
SOCKET_FILE: Final = "master.sock"
#: the largest request or answer line
MAX_LINE_BYTES = 16 * 2**20
#: CallMaster's own timeout is the command's; the request gets this much more
_MARGIN_S = 2.0
#: how long a function may take to send its request line
_READ_REQUEST_S = 10.0
_MAX_PATH_BYTES = 107


def relay_address(state_dir: Path, node_uuid: str) -> str:
    """Where the relay listens: the socket file, or ``@name`` if its path is too long."""
    path = str(state_dir.resolve() / SOCKET_FILE)
    if len(os.fsencode(path)) <= _MAX_PATH_BYTES:
        return path
    return f"@noded-master-{node_uuid}"


class Relay:
    """Serves ``call_master`` requests of this daemon's function processes."""

    def __init__(
        self, link: MasterLink, node_uuid: str, fnc_id_of: Callable[[int], str | None]
    ) -> None:
        self._link = link
        self._uuid = node_uuid
        self._fnc_id_of = fnc_id_of
        self._server: asyncio.AbstractServer | None = None

    async def start(self, address: str) -> None:
        bind = "\0" + address[1:] if address.startswith("@") else address
        if not address.startswith("@"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)  # a daemon before us left it
        self._server = await asyncio.start_unix_server(self._serve, bind, limit=MAX_LINE_BYTES)
        if not address.startswith("@"):
            os.chmod(address, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid = _peer_pid(writer)
            if pid is None:
                return
            line = await asyncio.wait_for(reader.readline(), _READ_REQUEST_S)
            answer = await self._answer(line, self._fnc_id_of(pid))
            writer.write(orjson.dumps(answer) + b"\n")
            await asyncio.wait_for(writer.drain(), _READ_REQUEST_S)
        except (OSError, ValueError, TimeoutError) as exc:
            event(log, "master.relay_failed", logging.WARNING, error=str(exc))
        finally:
            writer.close()

    async def _answer(self, line: bytes, fnc_id: str | None) -> dict[str, Any]:
        try:
            request = orjson.loads(line)
            command, args, timeout_s = request["command"], request["args"], request["timeout"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return _raise("BadRequest", "a call_master request is {command, args, timeout}")
        body = CallMasterRequest(self._uuid, command, args, timeout_s).to_wire()
        try:
            answer = await self._link.request(CALL_MASTER, body, float(timeout_s) + _MARGIN_S)
        except RemoteError as exc:
            return _raise(exc.wire_type, exc.message)
        except RPCError as exc:
            return _raise(type(exc).__name__, str(exc))
        finally:
            event(log, "master.call", command=command, fnc_id=fnc_id)
        return {"answer": {"result": answer.get("result"), "error": answer.get("error")}}


def _raise(kind: str, message: str) -> dict[str, Any]:
    return {"raise": {"type": kind, "message": message}}


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The caller's pid, if it runs as this daemon's user (else None: refused)."""
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    if uid != os.getuid():
        event(log, "master.relay_refused", logging.WARNING, pid=pid, uid=uid)
        return None
    return int(pid)
