"""Operations on the app's shared state, as the state checkers read them.

A history is a sequence of ``Op``, sorted by ``t_start``, in the manner of a
Jepsen history: each operation has an outcome, ``ok`` (it took effect, and
``seen`` is what it saw), ``fail`` (it surely had no effect: it never reached
the app, or the app refused it with a 4xx) or ``unknown`` (it may or may not have
taken effect, e.g. a timeout or a 5xx). A compare-and-set with outcome ``ok`` either
swapped (``seen`` True) or compared and failed (``seen`` False): a definite answer
that saw another value and changed nothing. The checkers depend only on this type,
not on how a run records requests.

Also here: how an operation is told in plain words for the evidence (who did
what, on which replica, when: seconds from the first operation of the run).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
OUTCOMES = (OK, FAIL, UNKNOWN)
REGISTER_FS = frozenset({"write", "read", "cas"})
SET_FS = frozenset({"add", "read-all"})
COUNTER_FS = frozenset({"incr", "read-counter"})
LIST_FS = frozenset({"append", "read-list"})
LOGIN_FS = frozenset({"login", "session"})
#: Every operation, in the order ``loadtest.ops`` lists them.
ALL_FS = ("write", "read", "cas", "add", "read-all", "incr", "read-counter", "append",
          "read-list", "login", "session")
#: Operations whose ``seen`` is what they are about: without it they judge nothing.
READ_FS = frozenset({"read", "read-all", "read-counter", "read-list", "session"})
EXAMPLES = 10  # examples of each kind of violation kept for the report


@dataclass(frozen=True, slots=True)
class Op:
    process: str          # who issued it; one process's ops are sequential (e.g. "local/17")
    f: str                # one of ALL_FS
    key: str | None       # register key, set, counter or list name, or None
    value: object         # sent: write -> v, add/append -> element, cas -> (old, new),
                          # incr -> n, login -> user
    seen: object          # seen: read -> v or None (absent), read-all/read-list -> list,
                          # read-counter -> n, session -> user; cas -> swapped (bool)
    outcome: str          # "ok" | "fail" (surely no effect) | "unknown" (may have taken effect)
    t_start: float        # epoch s, before the request was sent (lower bound of its real span)
    t_end: float          # epoch s, when its response arrived; for unknown: when we gave up
    replica: str | None   # the replica that served it, if known
    status: int = 0       # HTTP status (0: no response)
    index: int = 0        # position in the run's history, for evidence


def freeze(value: object) -> Hashable:
    """A hashable, comparable stand-in for a JSON-like value (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def fmt(value: object, limit: int = 60) -> str:
    """A value as the report shows it: JSON, cut to ``limit`` characters."""
    try:
        text = json.dumps(thaw(value), default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def thaw(value: object) -> object:
    """Back from ``freeze`` to JSON-like data (tuples become lists)."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset):
        return sorted((thaw(v) for v in value), key=repr)
    return value


def span(op: Op, t0: float) -> str:
    return f"{op.t_start - t0:.3f}–{op.t_end - t0:.3f} s"


def describe(op: Op, t0: float) -> str:
    """One operation in plain words: who did what to which key, on which replica, when."""
    where = f"on {op.replica}" if op.replica else "on an unknown replica"
    what = _what(op)
    if op.outcome == UNKNOWN:
        answer = f"HTTP {op.status} at" if op.status else "no answer by"
        return (f"{op.process} {what} {where} from {op.t_start - t0:.3f} s (outcome unknown: "
                f"{answer} {op.t_end - t0:.3f} s)")
    http = f"HTTP {op.status}" if op.status else "no answer"
    if op.outcome == FAIL:
        return f"{op.process} {what} {where} at {span(op, t0)} ({http}: no effect)"
    return f"{op.process} {what} {where} at {span(op, t0)} ({http})"


def _what(op: Op) -> str:
    """What an operation did, in words (its key included)."""
    key = f" {op.key}" if op.key is not None else ""
    n = len(op.seen) if isinstance(op.seen, list | tuple) else 0
    if op.f == "write":
        return f"wrote {fmt(op.value)} to{key}"
    if op.f == "read":
        return f"read {fmt(op.seen)} from{key}"
    if op.f == "cas":
        old, new = _pair(op.value)
        result = "" if op.outcome != OK else ": swapped" if op.seen is not False else \
            ": compare failed"
        return f"compare-and-set{key} from {fmt(old)} to {fmt(new)}{result}"
    if op.f in ("add", "append"):
        return f"{op.f}ed {fmt(op.value)} to{key}"  # added, appended
    if op.f == "read-all":
        return f"read{key}: {n} element(s)"
    if op.f == "read-list":
        return f"read{key}: {fmt(op.seen, 80)}"
    if op.f == "incr":
        return f"added {fmt(op.value)} to{key}"
    if op.f == "read-counter":
        return f"read {fmt(op.seen)} from{key}"
    if op.f == "login":
        return f"logged in as {fmt(op.value)}"
    if op.f == "session":
        who = "not logged in" if op.seen is None else f"logged in as {fmt(op.seen)}"
        return f"asked who it is: {who}"
    return f"{op.f}{key} {fmt(op.value)}"


def evidence(op: Op, t0: float) -> dict:
    """An operation as plain data for summary.json: times in seconds from the first op."""
    return {
        "index": op.index, "process": op.process, "f": op.f, "key": op.key,
        "value": thaw(op.value), "seen": thaw(op.seen), "outcome": op.outcome,
        "t_start": round(op.t_start - t0, 4), "t_end": round(op.t_end - t0, 4),
        "replica": op.replica, "status": op.status, "text": describe(op, t0),
    }


def _pair(value: object) -> tuple[object, object]:
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    return value, None


def cas_pair(value: object) -> tuple[Hashable, Hashable]:
    """The (old, new) of a compare-and-set, frozen."""
    old, new = _pair(value)
    return freeze(old), freeze(new)
