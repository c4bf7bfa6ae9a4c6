"""Calls lost in a crash: started by an earlier daemon, never seen to finish.

A master that resends a StartFunction with the same ``request_id`` after the node
restarted must not get a second run of a call the node lost: a lost call that had a
request_id is remembered under its key (:func:`noded.calls.table.request_key`), and such
a StartFunction is answered ``404 UnknownFunctionCall`` naming the lost call (``409
RequestIdConflict`` if its fn_name or fn_args differ), never with a new process.

It is remembered as long as a finished call would be: ``--result-ttl`` from the start of
the daemon that found it lost, at most ``--max-retained`` such calls (oldest dropped
first), and across later restarts (the journal's ``lost`` records).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rpc_client.errors import RemoteError, RequestIdConflict, UnknownFunctionCall
from rpc_client.logs import event
from rpc_client.protocol import FncId

log = logging.getLogger("noded.calls")


@dataclass(frozen=True)
class LostCall:
    """A call an earlier daemon started, with a request_id, and never saw finish."""

    fnc_id: str
    fn_name: str
    request_id: str
    owner: str | None
    digest: bytes
    #: when the daemon that found it lost started (Unix time)
    lost_at: float
    #: what became of it (:func:`noded.calls.table.lost_in_a_crash`)
    why: str

    def record(self) -> dict[str, Any]:
        """Its journal record."""
        return {
            "op": "lost", "fnc_id": self.fnc_id, "fn_name": self.fn_name,
            "request_id": self.request_id, "owner": self.owner, "digest": self.digest.hex(),
            "lost_at": self.lost_at, "why": self.why,
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LostCall:
        """The lost call of a checked ``lost`` record (:mod:`noded.calls.records`)."""
        return cls(
            fnc_id=record["fnc_id"],
            fn_name=record["fn_name"],
            request_id=record["request_id"],
            owner=record["owner"],
            digest=bytes.fromhex(record["digest"]),
            lost_at=float(record["lost_at"]),
            why=record["why"],
        )

    def refusal(self, digest: bytes) -> RemoteError:
        """What a StartFunction with its request_id (and these arguments) is answered."""
        if digest != self.digest:
            return RequestIdConflict(
                f"request_id {self.request_id!r} was used by call {self.fnc_id} "
                f"({self.fn_name}) with other arguments"
            )
        ppid = FncId.parse(self.fnc_id).ppid
        return UnknownFunctionCall(
            f"request_id {self.request_id!r} names call {self.fnc_id} ({self.fn_name}), "
            f"started by an earlier ganeti-noded process (pid {ppid}) and lost: {self.why}; "
            "it is not run again"
        )


class LostCalls:
    """The lost calls still remembered, by request key, oldest first."""

    def __init__(
        self, *, ttl_s: float, max_kept: int, on_forget: Callable[[str], None] | None = None
    ) -> None:
        self._ttl_s = ttl_s
        self._max_kept = max_kept
        self._on_forget = on_forget
        self._by_key: collections.OrderedDict[str, LostCall] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[LostCall]:
        return iter(list(self._by_key.values()))

    def keep(self, lost: LostCall, key: str) -> None:
        """Remember ``lost`` under ``key``; given oldest first (by ``lost_at``)."""
        self._by_key[key] = lost
        while len(self._by_key) > self._max_kept:
            self._drop_oldest()

    def check(self, key: str, digest: bytes) -> None:
        """Raise the refusal of a StartFunction whose key names a lost call."""
        lost = self._by_key.get(key)
        if lost is not None:
            event(log, "call.lost_request_id", logging.WARNING, fnc_id=lost.fnc_id,
                  request_id=lost.request_id, fn_name=lost.fn_name)  # fmt: skip
            raise lost.refusal(digest)

    def expire(self, now: float) -> int:
        """Forget lost calls older than the TTL; returns how many went."""
        count = 0
        while self._by_key and now - next(iter(self._by_key.values())).lost_at >= self._ttl_s:
            self._drop_oldest()
            count += 1
        return count

    def _drop_oldest(self) -> None:
        _, lost = self._by_key.popitem(last=False)
        if self._on_forget is not None:
            self._on_forget(lost.fnc_id)
