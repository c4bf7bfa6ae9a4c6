"""How calls are made and fan-outs rolled out: the library's public options objects.

* :class:`CallOptions`: how each node's call is made (the longest single wait on the
  node, the execution deadline the node enforces, the retries), the same for one node or
  many;
* :class:`Rollout`: how a fan-out starts its nodes (a window, canaries, a failure budget);
* :class:`RetryPolicy`: how transport failures and Busy answers are retried.

All are frozen dataclasses with keyword-only fields, checked when made: a wrong type is a
``TypeError``, a value out of range a ``ValueError``, each naming the field.  The overall
deadline stays the ``timeout`` argument of each call: it is what every call is given, not
a way of making it.

The keywords these objects replace (``call_many(..., window=10, wait_s=1)``) still work
for one release, with a :class:`DeprecationWarning` that names the replacement
(:func:`options_of`).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from typing import Any, Literal, TypedDict

DEFAULT_WAIT_S = 10.0
#: the largest int a number of seconds may be: a float's range (a larger int would not
#: convert)
_LARGEST_SECONDS = int(sys.float_info.max)
#: past this many doublings every backoff is at its cap (2**1023 is the largest power of two
#: a float holds); a later attempt's exponent stops here instead of overflowing
_MAX_DOUBLINGS = 1023


def _check_number(name: str, value: Any, *, positive: bool, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a number of seconds" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if isinstance(value, int) and abs(value) > _LARGEST_SECONDS:
        raise ValueError(f"{name} must be a number of seconds a float can hold (at most "
                         f"{sys.float_info.max:.3e}), got an int of "
                         f"{abs(value).bit_length()} bits")  # fmt: skip
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")


def _check_count(name: str, value: Any, *, least: int, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if value < least:
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be >= {least}{none}, got {value}")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How transport failures and Busy answers are retried."""

    first_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    #: with no deadline, give up after this many failed attempts in a row
    attempts_without_deadline: int = 5

    def __post_init__(self) -> None:
        _check_number("first_backoff_s", self.first_backoff_s, positive=True, optional=False)
        _check_number("max_backoff_s", self.max_backoff_s, positive=True, optional=False)
        _check_count("attempts_without_deadline", self.attempts_without_deadline, least=1,
                     optional=False)  # fmt: skip
        if self.max_backoff_s < self.first_backoff_s:
            raise ValueError(f"max_backoff_s ({self.max_backoff_s}) must be >= "
                             f"first_backoff_s ({self.first_backoff_s})")  # fmt: skip

    def backoff_s(self, attempt: int) -> float:
        """The wait before retry ``attempt`` (1, 2, ...): doubling from
        ``first_backoff_s``, never more than ``max_backoff_s``, for any attempt."""
        doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        return min(self.max_backoff_s, self.first_backoff_s * 2.0**doublings)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, kw_only=True)
class CallOptions:
    """How a call is made, the same for one node or many: ``wait_s``, the longest single
    wait on the node (each request waits at most this, cut to the deadline);
    ``abort_after_s``, the execution deadline the node enforces (``None``: none); and the
    retry policy.  (``abort_after`` is the old name of ``abort_after_s``.)"""

    wait_s: float = DEFAULT_WAIT_S
    abort_after_s: float | None = None
    retry: RetryPolicy = DEFAULT_RETRY
    abort_after: InitVar[float | None] = None

    def __post_init__(self, abort_after: float | None) -> None:
        if abort_after is not None:
            if self.abort_after_s is not None:
                raise TypeError("give abort_after_s only (abort_after is its old name)")
            warn_deprecated("CallOptions(abort_after=...) is deprecated: use abort_after_s")
            object.__setattr__(self, "abort_after_s", abort_after)
        _check_number("wait_s", self.wait_s, positive=True, optional=False)
        _check_number("abort_after_s", self.abort_after_s, positive=True, optional=True)
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")


DEFAULT_OPTIONS = CallOptions()


@dataclass(frozen=True, kw_only=True)
class Rollout:
    """How a fan-out starts its nodes (:mod:`masterd.rollout`): at most ``window`` calls
    in flight (``None``: all at once); the first ``canary`` nodes alone first, the rest
    only if all of them succeeded; once more than ``max_failures`` nodes failed
    (``None``: no budget), no further node starts."""

    window: int | None = None
    canary: int = 0
    max_failures: int | None = None

    def __post_init__(self) -> None:
        _check_count("window", self.window, least=1, optional=True)
        _check_count("canary", self.canary, least=0, optional=False)
        _check_count("max_failures", self.max_failures, least=0, optional=True)

    def check_nodes(self, count: int) -> None:
        """``ValueError`` unless this roll-out fits a fan-out of ``count`` nodes: more
        canaries than nodes would leave no rest to roll out, a sign of a mistake."""
        if self.canary > count:
            nodes = "node" if count == 1 else "nodes"
            raise ValueError(f"canary={self.canary} is more than the fan-out's {count} {nodes}")


ALL_AT_ONCE = Rollout()


class OldWaitKeywords(TypedDict, total=False):
    """The keywords :class:`CallOptions` replaces in a wait for a call already started
    (deprecated; one release left)."""

    wait_s: float
    retry: RetryPolicy


class OldCallKeywords(OldWaitKeywords, total=False):
    """The keywords :class:`CallOptions` replaces (deprecated; one release left)."""

    abort_after: float | None


class OldRolloutKeywords(TypedDict, total=False):
    """The keywords :class:`Rollout` replaces (deprecated; one release left)."""

    window: int | None
    canary: int
    max_failures: int | None


class OldFanOutKeywords(OldCallKeywords, OldRolloutKeywords, total=False):
    """The keywords :class:`CallOptions` and :class:`Rollout` replace in a fan-out
    (deprecated; one release left).  ``concurrency`` is ``window``'s older name."""

    concurrency: int | None


#: each old keyword: the field that replaces it, in a CallOptions or a Rollout
_CALL_FIELDS = {"wait_s": "wait_s", "abort_after": "abort_after_s", "retry": "retry"}
_ROLLOUT_FIELDS = {"window": "window", "concurrency": "window", "canary": "canary",
                   "max_failures": "max_failures"}  # fmt: skip
#: what takes which old keywords: a call, a wait for one started, a fan-out, a job (its
#: roll-out only)
Takes = Literal["call", "wait", "fan_out", "rollout"]
_TAKES: dict[str, set[str]] = {
    "call": set(_CALL_FIELDS),
    "wait": set(_CALL_FIELDS) - {"abort_after"},
    "fan_out": {*_CALL_FIELDS, *_ROLLOUT_FIELDS},
    "rollout": set(_ROLLOUT_FIELDS) - {"concurrency"},
}


def call_options_of(
    where: str, options: CallOptions | None, old: Mapping[str, Any], takes: Takes = "call"
) -> CallOptions:
    """The :class:`CallOptions` of a call given ``options`` or the old keywords ``old``
    (with a :class:`DeprecationWarning`); ``TypeError`` for a keyword it does not take."""
    return options_of(where, options, None, old, takes=takes)[0]


def rollout_of(where: str, rollout: Rollout | None, old: Mapping[str, Any]) -> Rollout:
    """The :class:`Rollout` of a job given ``rollout`` or the old keywords ``old``, as
    :func:`call_options_of` does for a call."""
    return options_of(where, None, rollout, old, takes="rollout")[1]


def options_of(
    where: str, options: CallOptions | None, rollout: Rollout | None,
    old: Mapping[str, Any], *, takes: Takes = "fan_out",
) -> tuple[CallOptions, Rollout]:  # fmt: skip
    """The :class:`CallOptions` and :class:`Rollout` of a fan-out given as objects or as
    the old keywords ``old`` (then with a :class:`DeprecationWarning` naming what replaces
    them); ``TypeError`` for a keyword ``where`` does not take, an object of the wrong
    class, or a setting given both ways."""
    _check_instance(where, "options", options, CallOptions)
    _check_instance(where, "rollout", rollout, Rollout)
    for key in old:
        if key not in _TAKES[takes]:
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}")
    if not old:
        return options or DEFAULT_OPTIONS, rollout or ALL_AT_ONCE
    if "window" in old and "concurrency" in old:
        raise TypeError(f"{where}(): give window only (concurrency is its old name)")
    call = {_CALL_FIELDS[k]: v for k, v in old.items() if k in _CALL_FIELDS}
    roll = {_ROLLOUT_FIELDS[k]: v for k, v in old.items() if k in _ROLLOUT_FIELDS}
    _refuse_both(where, "options", options, call)
    _refuse_both(where, "rollout", rollout, roll)
    warn_deprecated(_deprecation(where, old, call, roll))
    made_options = options or (CallOptions(**call) if call else DEFAULT_OPTIONS)
    return made_options, rollout or (Rollout(**roll) if roll else ALL_AT_ONCE)


def without_old_keywords(
    where: str, kwargs: Mapping[str, Any], *, takes: Takes = "fan_out"
) -> dict[str, Any]:
    """``kwargs`` with the old keywords made into ``options`` and ``rollout`` (as far as
    ``where`` takes them) here, at once, as :func:`options_of` does: for what runs the
    call in another thread (the blocking ``Cluster`` and ``MasterClient``), so that a
    warning or a ``TypeError`` names the caller's line."""
    old = {key: value for key, value in kwargs.items() if key in _TAKES["fan_out"]}
    if not old:
        return dict(kwargs)
    rest = {key: value for key, value in kwargs.items() if key not in old}
    options, rollout = options_of(where, rest.get("options"), rest.get("rollout"), old,
                                  takes=takes)  # fmt: skip
    if takes != "rollout":
        rest["options"] = options
    if takes in ("fan_out", "rollout"):
        rest["rollout"] = rollout
    return rest


def _check_instance(where: str, name: str, value: object, cls: type) -> None:
    if value is not None and not isinstance(value, cls):
        raise TypeError(f"{where}(): {name} must be a {cls.__name__} (masterd.{cls.__name__}), "
                        f"got {type(value).__name__}")  # fmt: skip


def _refuse_both(where: str, name: str, given: object, fields: dict[str, Any]) -> None:
    if given is not None and fields:
        raise TypeError(f"{where}(): {', '.join(fields)} given both in {name}= and as "
                        f"keywords; give them in {name}= only")  # fmt: skip


def _deprecation(where: str, old: Mapping[str, Any], call: dict[str, Any],
                 roll: dict[str, Any]) -> str:  # fmt: skip
    given = ", ".join(f"{key}=..." for key in old)
    new = [f"{name}={cls}({', '.join(f'{k}=...' for k in fields)})"
           for name, cls, fields in (("options", "CallOptions", call),
                                     ("rollout", "Rollout", roll)) if fields]  # fmt: skip
    return f"{where}({given}) is deprecated and goes in the next release: pass {' and '.join(new)}"


#: the packages whose frames a deprecation warning passes over to name the user's line
_INTERNAL = ("masterd", "asyncio", "contextlib", "concurrent", "threading", "typing")


def warn_deprecated(message: str) -> None:
    """A :class:`DeprecationWarning` attributed to the first caller outside this library
    (so that the line to change is the one named, and Python shows it from ``__main__``)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
        _INTERNAL
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DeprecationWarning, stacklevel=level + 1)
