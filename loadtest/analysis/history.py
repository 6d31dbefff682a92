"""Operations on the app's shared state, as the state checkers read them.

A history is a sequence of ``Op``, sorted by ``t_start``, in the manner of a
Jepsen history: each operation has an outcome, ``ok`` (it took effect, and
``seen`` is what it saw), ``fail`` (it surely had no effect: it never reached
the app) or ``unknown`` (it may or may not have taken effect, e.g. a timeout).
The checkers depend only on this type, not on how a run records requests.

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
LOGIN_FS = frozenset({"login", "session"})
EXAMPLES = 10  # examples of each kind of violation kept for the report


@dataclass(frozen=True, slots=True)
class Op:
    process: str          # who issued it; one process's ops are sequential (e.g. "local/17")
    f: str                # "write" | "read" | "cas" | "add" | "read-all" | "login" | "session"
    key: str | None       # register key, set name, or None
    value: object         # sent: write -> v, add -> element, cas -> (old, new), login -> user
    seen: object          # seen: read -> v or None (absent), read-all -> list, session -> user
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
    key = f" {op.key}" if op.key is not None else ""
    if op.f == "write":
        what = f"wrote {fmt(op.value)} to{key}"
    elif op.f == "read":
        what = f"read {fmt(op.seen)} from{key}" + (" (absent)" if op.seen is None else "")
    elif op.f == "cas":
        old, new = _pair(op.value)
        what = f"compare-and-set{key} from {fmt(old)} to {fmt(new)}"
    elif op.f == "add":
        what = f"added {fmt(op.value)} to{key}"
    elif op.f == "read-all":
        n = len(op.seen) if isinstance(op.seen, list | tuple) else 0
        what = f"read{key}: {n} element(s)"
    elif op.f == "login":
        what = f"logged in as {fmt(op.value)}"
    elif op.f == "session":
        who = "not logged in" if op.seen is None else f"logged in as {fmt(op.seen)}"
        what = f"asked who it is: {who}"
    else:
        what = f"{op.f}{key} {fmt(op.value)}"
    status = f", HTTP {op.status}" if op.status and not 200 <= op.status < 300 else ""
    if op.outcome == UNKNOWN:
        return (f"{op.process} {what} {where} from {op.t_start - t0:.3f} s (outcome unknown: "
                f"no answer by {op.t_end - t0:.3f} s{status})")
    if op.outcome == FAIL:
        return f"{op.process} {what} {where} at {span(op, t0)} (failed{status})"
    return f"{op.process} {what} {where} at {span(op, t0)}{status}"


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
