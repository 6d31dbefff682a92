"""Did every list keep its appends, once each, in one order? Elle's list-append idea, key
by key.

A list (comments, an event log, a cart's lines) grows by ``append`` operations (``value``:
one element) and is read whole by ``read-list`` operations (``seen``: the list, in
order). Appends only ever add at the end, so every read of a correct list is a prefix of
one order, the order the appends took effect in; and since each read shows the order of
everything before its end, the reads themselves reveal that order (Kingsbury & Alvaro's
Elle infers version orders from list-append reads the same way). Per key:

- **reordered**: a read that is not a prefix of the order the longest read so far
  shows: two elements in the other order, or another element where that read had one (an
  element dropped from between two others, or replaced, as two read-modify-writes that
  raced leave it). Counted once per read, against the read it disagrees with.
- **duplicated**: an element read more times than it was appended (by requests that
  may have taken effect), or read although never appended: a retried append applied
  twice.
- **lost**: an element known to be in the list (its append acknowledged, or a read of it
  ended) before a read began, missing from that read and from every read after.
- **stale**: a read that began after an element was known and missed it, although a
  later read had it again (a cache, a lagging replica).

Lost, stale and duplicated are judged per element exactly as sets are (``setcheck``,
Jepsen's set-full); the order is this module's. Elements should be unique per key (the
client and a sequence number), so that each one can be followed. Lost and stale are
judged on the reads that began after an element was known; with none, each says *not
checked*, as does reordered with fewer than two reads that returned anything.

Operations arrive sorted by ``t_start``; memory is, per key, the longest read so far
(and each element's state, as for sets).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from loadtest.analysis.history import (
    EXAMPLES,
    LIST_FS,
    OK,
    Op,
    describe,
    evidence,
    fmt,
    freeze,
    thaw,
)
from loadtest.analysis.setcheck import NOTHING_AFTER_KNOWN, SetChecker


class _Order:
    """A key's order as its longest read shows it: the elements, and where each is."""

    __slots__ = ("items", "op")

    def __init__(self) -> None:
        self.items: tuple[Hashable, ...] = ()
        self.op: Op | None = None


class ListChecker:
    """Feed ``append`` and ``read-list`` operations in ``t_start`` order; ``result()``
    judges them."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = t0
        self.elements = SetChecker(t0, fs=("append", "read-list"))
        self.orders: dict[object, _Order] = {}
        self.reordered = 0
        self.order_judged = 0
        self.reordered_by_replica: dict[str | None, int] = {}
        self.reordered_examples: list[dict] = []
        self.ok_reads = 0
        self.nonempty_reads = 0

    def feed(self, op: Op) -> None:
        if op.f not in LIST_FS:
            return
        if self.t0 is None:
            self.t0 = op.t_start
            self.elements.t0 = op.t_start
        self.elements.feed(op)
        if op.f == "read-list" and op.outcome == OK:
            self.ok_reads += 1
            self._order(op)

    def _order(self, read: Op) -> None:
        seen = read.seen if isinstance(read.seen, list | tuple) else []
        items = tuple(dict.fromkeys(freeze(e) for e in seen))  # a duplicate is counted apart
        order = self.orders.setdefault(read.key, _Order())
        if not items:
            return
        self.nonempty_reads += 1
        if order.items:
            self.order_judged += 1
            n = min(len(items), len(order.items))
            if items[:n] != order.items[:n]:
                self._reordered(read, items, order)
        if len(items) > len(order.items):
            order.items, order.op = items, read

    def _reordered(self, read: Op, items: tuple, order: _Order) -> None:
        t0 = self.t0 or 0.0
        self.reordered += 1
        self.reordered_by_replica[read.replica] = self.reordered_by_replica.get(
            read.replica, 0) + 1
        if len(self.reordered_examples) >= EXAMPLES:
            return
        at = next(i for i, (a, b) in enumerate(zip(items, order.items)) if a != b)
        if _swapped(items, order.items):
            where = "two elements in the other order"
        else:
            place = f"after {fmt(items[at - 1])}" if at else "first"
            where = f"{fmt(items[at])} {place}, where it had {fmt(order.items[at])}"
        self.reordered_examples.append({
            "key": read.key, "replica": read.replica, "process": read.process,
            "t": round(read.t_start - t0, 4), "position": at,
            "read": evidence(read, t0), "against": evidence(order.op, t0),
            "message": f"{describe(read, t0)}: not a prefix of the order another read showed "
                       f"({where}): {describe(order.op, t0)}"})

    def result(self) -> dict:
        sets = self.elements.result()
        reads = sets["reads"]
        out = {
            "ops": sets["adds"] + sets["reads"], "appends": sets["adds"], "reads": reads,
            "keys": sets["keys"], "elements": sets["elements"], "ok": sets["ok"],
            "unknown": sets["unknown"], "fail": sets["fail"],
            "judged_after_known": sets["judged_after_known"],
        }
        nothing = None if out["ops"] else "no list operations"
        read_nothing = nothing or (None if self.ok_reads else
                                   "no read of a list had a known outcome")
        after_known = read_nothing or (None if sets["judged_after_known"] else
                                       NOTHING_AFTER_KNOWN)
        out["lost"] = _entry(sets["lost"], sets["judged_after_known"], after_known,
                             examples=sets["lost_examples"])
        out["stale"] = _entry(sets["stale_reads"], sets["judged_after_known"], after_known,
            by_replica=sets["stale_by_replica"], examples=sets["stale_examples"],
            misses=sets["stale_misses"], max_s=sets["stale_max_s"])
        out["duplicated"] = _entry(
            sets["duplicates"] + sets["unexpected"], self.nonempty_reads,
            read_nothing or ("no read of a list returned an element"
                             if not self.nonempty_reads else None),
            duplicates=sets["duplicates"], never_appended=sets["unexpected"],
            examples=(sets["duplicate_examples"] + sets["unexpected_examples"])[:EXAMPLES])
        out["reordered"] = _entry(
            self.reordered, self.order_judged,
            read_nothing or ("fewer than two reads of a list returned elements"
                             if not self.order_judged else None),
            by_replica=dict(self.reordered_by_replica), examples=self.reordered_examples)
        return out


def _swapped(items: tuple, order: tuple) -> bool:
    """Do two elements both lists hold stand in the other order?"""
    place = {e: i for i, e in enumerate(order)}
    common = [place[e] for e in items if e in place]
    return any(b < a for a, b in zip(common, common[1:]))


def _entry(count: int, judged: int, unchecked: str | None, **evidence_) -> dict:
    """One property's result: a count that must be 0, judged on ``judged`` cases; not
    checked (with the reason) when nothing was judged, unless the count already fails."""
    out = {"violations": count, "judged": judged, **evidence_}
    if count:
        out["valid"] = False
    elif unchecked:
        out["valid"], out["reason"] = None, unchecked
    else:
        out["valid"] = True
    if "examples" in out:
        out["examples"] = [_plain(e) for e in out["examples"]]
    return out


def _plain(example: dict) -> dict:
    return {k: thaw(v) if k == "element" else v for k, v in example.items()}


def check_lists(ops: Iterable[Op], t0: float | None = None) -> dict:
    """Lost, stale, duplicated and reordered elements over a history sorted by
    ``t_start``. Returns ``{"lost": {...}, "stale": {...}, "duplicated": {...},
    "reordered": {...}}``, each ``{"valid", "violations", "judged", "examples", ...}``."""
    checker = ListChecker(t0)
    for op in ops:
        checker.feed(op)
    return checker.result()
