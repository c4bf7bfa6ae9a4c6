"""``emit`` and ``call_master``: a function's way to its node's masters.

Both go through the node's own daemon, which holds the node's identity and its masters.
``emit`` writes an event line on the frame channel (under the lock of progress reports
and the result, :mod:`.progress`) and returns: it never waits for the network, and the
daemon puts the event in its spool with the call's fnc_id.  ``call_master`` asks the
daemon on its relay socket (``noded.master.relay``: why a socket, not the channel) and
waits for the master's answer.  Outside a function process ``emit`` does nothing.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

from noded.process.child import frames, progress

#: the most bytes of one event line (the frame channel's limit is much larger: an
#: event is a note, not a result)
MAX_EVENT_BYTES = 256 * 1024
MAX_TYPE_CHARS = 200
#: the environment variable naming the daemon's relay (noded.master.relay.RELAY_ENV)
RELAY_ENV = "NODED_MASTER_SOCKET"
#: the function waits this much longer than the command's timeout for the daemon
_MARGIN_S = 5.0


def emit(type: str, data: Any = None) -> None:
    """Send an event to the node's masters, by way of the node's spool; never blocks
    on the network.  ``type`` names it (``"disk.replacing"``), ``data`` is any JSON.

    Raises ``TypeError`` if ``data`` is not JSON, ``ValueError`` if ``type`` is empty or
    too long, or the event over 256 KiB.
    """
    if not isinstance(type, str) or not type or len(type) > MAX_TYPE_CHARS:
        raise ValueError(f"an event type is a string of 1 to {MAX_TYPE_CHARS} characters")
    try:
        line = frames.encode_event(type, data)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"event data must be JSON: {exc}") from exc
    if len(line) > MAX_EVENT_BYTES:
        raise ValueError(f"an event is at most {MAX_EVENT_BYTES} bytes, this one {len(line)}")
    progress.send_line(line)


def call_master(command: str, args: dict[str, Any] | None = None, *, timeout: float = 30) -> Any:
    """Run master command ``command`` with ``args`` and return its result.

    Raises what the command raised (as ``rpc_client.errors.FunctionFailed`` with its
    ``type``, ``message`` and ``traceback``, or the class registered for that type), a
    request error of the master (``UnknownCommand``, ``UnknownProcedure``, ...), or
    ``NodeUnreachable`` when no master answers within ``timeout`` seconds or the node has
    no master.
    """
    from rpc_client import errors

    if not isinstance(command, str) or not command:
        raise ValueError("command must be a non-empty string")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError(f"timeout must be a number > 0, got {timeout!r}")
    request = orjson.dumps({"command": command, "args": args or {}, "timeout": timeout})
    address = os.environ.get(RELAY_ENV)
    if not address:
        raise errors.NodeUnreachable("this node has no master (ganeti-noded --master)")
    answer = _ask(address, request + b"\n", timeout + _MARGIN_S)
    return _result(answer, errors)


def _ask(address: str, request: bytes, timeout_s: float) -> Any:
    import socket  # here: a function that only emits does not pay for it

    from rpc_client.errors import NodeUnreachable

    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(target)
            sock.sendall(request)
            with sock.makefile("rb") as answer:
                line = answer.readline()
    except OSError as exc:  # socket.timeout included
        raise NodeUnreachable(f"the node's daemon did not answer call_master: {exc}") from exc
    if not line:
        raise NodeUnreachable("the node's daemon closed call_master without an answer")
    return orjson.loads(line)


def _result(answer: Any, errors: Any) -> Any:
    if "answer" in answer:
        error = answer["answer"].get("error")
        if error is None:
            return answer["answer"].get("result")
        raise errors.function_error(error, fnc_id=None, node="master")
    kind, message = answer["raise"]["type"], answer["raise"]["message"]
    remote = errors.REMOTE_ERRORS.get(kind)
    if remote is not None:
        raise remote(message, node="master")
    if kind == "NodeUnreachable":
        raise errors.NodeUnreachable(message)
    raise errors.ProtocolError(f"{kind}: {message}")
