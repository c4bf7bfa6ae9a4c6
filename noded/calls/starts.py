"""A StartFunction on its way to a process: what the supervisor derives from it, once."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from noded.policy.rules import Caller
from noded.process.child.frames import encode_request
from rpc_client.errors import BadRequest
from rpc_client.protocol import StartFunctionRequest


@dataclass(frozen=True, kw_only=True)
class Start:
    """A StartFunction on its way to a process, and what is derived from it, once."""

    request: StartFunctionRequest
    encoded: bytes
    caller: Caller | None
    owner: str | None
    #: its request_id as the call table keys it (per owner under a policy)
    key: str | None
    #: of its fn_name and fn_args, for the request_id conflict check (with a key only)
    digest: bytes
    #: the limits it runs under (its function's, else the daemon's)
    limits: dict[str, float]


def encode_start(request: StartFunctionRequest, limits: dict[str, float]) -> bytes:
    """The request as the function process reads it on stdin."""
    try:
        return encode_request(request.fn_name, request.fn_args, limits)
    except orjson.JSONEncodeError as exc:
        raise BadRequest(f"fn_args cannot be passed to a function process: {exc}") from exc
