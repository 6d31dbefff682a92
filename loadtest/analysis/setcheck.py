"""Did every set (or append-only list) keep what was added? In the manner of Jepsen's
set-full checker: for each element, when it became known and whether it stayed.

Per key, ``add`` operations add one element and ``read-all`` operations return every
element (a list; a set's members in any order). An element is *known* from the end of
its acknowledged add, or from the end of the first read that returned it, whichever is
first (an add with an unknown outcome is known only once read). A read that began after
the element was known must return it. Then, for each element:

- **stale**: missing from a read that began after the element was known, and returned
  again by a later read: that read was stale (a cache, a lagging replica). Each such
  read is counted, named by the replica that served it.
- **lost**: missing from the last read that began after it was known, and never
  returned again: the element was lost (an acknowledged add that did not stay).
- **unexpected**: returned by a read but never added (or added only by requests that
  surely failed).
- **duplicates**: returned more times by one read than it was added by requests that
  may have taken effect (only a list can show this).
- **never read**: acknowledged, but no read began after its add ended: not judged.

Lost and stale are judged on the reads that began after an element was known; with none
(every read began before any add was acknowledged) there was nothing to judge, and each
says so (*not checked*) rather than pass. Stale is counted in reads: each read that
missed one element or more and was contradicted later counts once, under the replica
that served it (``stale_by_replica`` sums to ``stale_reads``); ``stale_misses`` counts
(element, read) pairs.

``fail`` operations are dropped; a read with an unknown outcome returned nothing to judge.

Reads are taken in ``t_start`` order; an element known at an instant before a read began
was made known by an add or a read that ended before, so it has already been fed: the
check runs as the history streams in. Memory: one entry per distinct element, and the
reads' pending "known" times.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from loadtest.analysis.history import (
    EXAMPLES,
    FAIL,
    OK,
    UNKNOWN,
    Op,
    describe,
    evidence,
    fmt,
    freeze,
    thaw,
)


@dataclass(slots=True)
class _Element:
    added_ok: int = 0
    added_unknown: int = 0
    added_fail: int = 0
    first_add: Op | None = None
    known_at: float = math.inf
    known_by: Op | None = None       # the add or the read that made it known
    pending_known: float = math.inf  # earliest known-time queued, not yet reached
    last_present: Op | None = None
    missing: list = field(default_factory=list)  # the first reads missing it since last present
    missing_n: int = 0                           # how many reads missed it since last present
    missing_from: int = 0                        # the first of them, in the key's read log
    missing_last: Op | None = None
    missing_by: Counter = field(default_factory=Counter)  # their replicas
    stale_reads: int = 0
    stale_max_s: float = 0.0
    reads_after_known: int = 0


class _SetKey:
    __slots__ = ("elements", "known", "queue", "reads", "replicas", "stale")

    def __init__(self) -> None:
        self.elements: dict[Hashable, _Element] = {}
        self.known: set[Hashable] = set()
        self.queue: list[tuple[float, int, Hashable, Op]] = []  # (time, tie, element, op)
        self.reads = 0
        # Per read, in order: the replica that served it, and whether it was stale. The
        # reads that missed an element since it was last present are a run of this log.
        self.replicas: list[str | None] = []
        self.stale = bytearray()


NOTHING_AFTER_KNOWN = ("no read began after an element was known (its add acknowledged, or "
                       "a read of it ended): nothing to judge for lost or stale elements")


class SetChecker:
    """Feed add and read-all operations in ``t_start`` order; ``result()`` judges them.
    ``fs``: the names of the two operations (a list's ``append`` and ``read-list``)."""

    def __init__(self, t0: float | None = None, fs: tuple[str, str] = ("add", "read-all")
                 ) -> None:
        self.t0 = t0
        self.add_f, self.read_f = fs
        self.keys: dict[object, _SetKey] = {}
        self.counts = {"adds": 0, "reads": 0, "ok": 0, "unknown": 0, "fail": 0}
        self.stale_examples: list[dict] = []
        self.stale_reads = 0          # distinct reads that were stale
        self.stale_pairs = 0          # (element, read) pairs
        self.stale_by_replica: Counter = Counter()
        self.duplicates: list[dict] = []
        self.duplicate_count = 0
        self.tie = 0
        self.last_start = -math.inf

    def feed(self, op: Op) -> None:
        if op.f not in (self.add_f, self.read_f):
            return
        if op.t_start < self.last_start:
            raise ValueError(f"set operations must arrive sorted by t_start: op #{op.index} "
                             "starts before the one fed before it")
        self.last_start = op.t_start
        if self.t0 is None:
            self.t0 = op.t_start
        self.counts["adds" if op.f == self.add_f else "reads"] += 1
        self.counts[op.outcome if op.outcome in (OK, FAIL) else UNKNOWN] += 1
        key = self.keys.setdefault(op.key, _SetKey())
        if op.f == self.add_f:
            self._add(key, op)
        elif op.outcome == OK:
            self._read(key, op)

    def _add(self, key: _SetKey, op: Op) -> None:
        element = freeze(op.value)
        state = key.elements.get(element)
        if state is None:
            state = key.elements[element] = _Element()
        if op.outcome == OK:
            state.added_ok += 1
            self._queue(key, state, element, op.t_end, op)
        elif op.outcome == FAIL:
            state.added_fail += 1
        else:
            state.added_unknown += 1
        if state.first_add is None or (state.first_add.outcome != OK and op.outcome == OK):
            state.first_add = op

    def _queue(self, key: _SetKey, state: _Element, element: Hashable, t: float,
               op: Op) -> None:
        if t < state.pending_known and t < state.known_at:
            state.pending_known = t
            self.tie += 1
            heapq.heappush(key.queue, (t, self.tie, element, op))

    def _read(self, key: _SetKey, op: Op) -> None:
        t0 = self.t0 or 0.0
        position = key.reads
        key.reads += 1
        key.replicas.append(op.replica)
        key.stale.append(0)
        queue = key.queue
        while queue and queue[0][0] < op.t_start:  # made known before this read began
            t, _, element, by = heapq.heappop(queue)
            state = key.elements[element]
            if t < state.known_at:
                state.known_at, state.known_by = t, by
                key.known.add(element)
            if state.pending_known == t:
                state.pending_known = math.inf
        items = op.seen if isinstance(op.seen, list | tuple) else []
        counts = Counter(freeze(e) for e in items)
        for element in counts.keys() - key.elements.keys():
            key.elements[element] = _Element()  # read but (so far) never added
        missing = key.known - counts.keys()
        for element in missing:
            state = key.elements[element]
            state.reads_after_known += 1
            if not state.missing_n:
                state.missing_from = position
            if len(state.missing) < 3:
                state.missing.append(op)
            state.missing_n += 1
            state.missing_last = op
            state.missing_by[op.replica] += 1
        for element, n in counts.items():
            state = key.elements[element]
            if element in key.known:
                state.reads_after_known += 1
            if state.missing_n:  # it came back: each read that missed it was stale
                self._stale(key, state, element, op, t0)
            state.last_present = op
            self._queue(key, state, element, op.t_end, op)
            if n > 1:
                self.duplicates.append({"key": op.key, "element": element, "count": n,
                                        "op": op})

    def _stale(self, key: _SetKey, state: _Element, element: Hashable, back: Op,
               t0: float) -> None:
        reads = state.missing
        state.stale_reads += state.missing_n
        self.stale_pairs += state.missing_n
        for i in range(state.missing_from, state.missing_from + state.missing_n):
            if not key.stale[i]:  # a read stale for several elements counts once
                key.stale[i] = 1
                self.stale_reads += 1
                self.stale_by_replica[key.replicas[i]] += 1
        lag = state.missing_last.t_start - state.known_at
        state.stale_max_s = max(state.stale_max_s, lag)
        for read in reads:
            if len(self.stale_examples) >= EXAMPLES:
                break
            self.stale_examples.append({
                "key": read.key, "element": thaw(element), "replica": read.replica,
                "process": read.process, "t": round(read.t_start - t0, 4),
                "read": evidence(read, t0),
                "message": f"{describe(read, t0)}, without {fmt(element)}, known since "
                           f"{state.known_at - t0:.3f} s ({_known(state, t0)}); it was "
                           f"back in a read at {back.t_start - t0:.3f} s"})
        state.missing, state.missing_n, state.missing_last = [], 0, None
        state.missing_by = Counter()

    def result(self) -> dict:
        t0 = self.t0 or 0.0
        lost, unexpected, duplicates = [], [], []
        outcome = Counter()
        for key_name, key in self.keys.items():
            for element, state in key.elements.items():
                may_apply = state.added_ok + state.added_unknown
                read = state.last_present is not None
                if read and may_apply == 0:
                    unexpected.append(self._unexpected(key_name, element, state, t0))
                    continue
                if state.missing_n:
                    lost.append(self._lost(key_name, element, state, t0))
                    outcome["lost"] += 1
                elif state.stale_reads:
                    outcome["stale"] += 1
                elif read or state.reads_after_known:
                    outcome["stable"] += 1
                elif state.added_ok:
                    outcome["never_read"] += 1
                else:
                    outcome["unknown_never_read"] += 1
        for d in self.duplicates:
            state = self.keys[d["key"]].elements[d["element"]]
            allowed = state.added_ok + state.added_unknown
            if d["count"] > max(allowed, 1):
                self.duplicate_count += 1
                if len(duplicates) < EXAMPLES:
                    duplicates.append({
                        "key": d["key"], "element": thaw(d["element"]), "count": d["count"],
                        "added": allowed, "replica": d["op"].replica,
                        "read": evidence(d["op"], t0),
                        "message": f"{describe(d['op'], t0)}, with {fmt(d['element'])} "
                                   f"{d['count']} times, added {allowed} time(s)"})
        lost.sort(key=lambda d: d["t"])
        reads = sum(k.reads for k in self.keys.values())
        n_ops = sum(self.counts[k] for k in ("adds", "reads"))
        after_known = sum(e.reads_after_known for k in self.keys.values()
                          for e in k.elements.values())
        out = {
            **self.counts, "keys": len(self.keys),
            "elements": sum(len(k.elements) for k in self.keys.values()),
            "outcomes": dict(outcome),
            # (element, read) pairs where a read began after the element was known: what
            # lost and stale are judged on.
            "judged_after_known": after_known,
            "lost": len(lost), "lost_examples": lost[:EXAMPLES],
            "stale_reads": self.stale_reads, "stale_misses": self.stale_pairs,
            "stale_examples": self.stale_examples,
            "stale_by_replica": dict(self.stale_by_replica),
            "stale_max_s": round(max((e.stale_max_s for k in self.keys.values()
                                      for e in k.elements.values()), default=0.0), 4),
            "unexpected": len(unexpected), "unexpected_examples": unexpected[:EXAMPLES],
            "duplicates": self.duplicate_count, "duplicate_examples": duplicates,
        }
        if self.stale_reads or lost or unexpected or self.duplicate_count:
            out["valid"] = False
        elif not n_ops:
            out["valid"], out["reason"] = None, "no set operations"
        elif not reads:
            out["valid"], out["reason"] = None, "no read of a set had a known outcome"
        elif not after_known:
            out["valid"], out["reason"] = None, NOTHING_AFTER_KNOWN
        else:
            out["valid"] = True
        return out

    def _lost(self, key: object, element: Hashable, state: _Element, t0: float) -> dict:
        first = state.missing[0]
        return {"key": key, "element": thaw(element), "t": round(first.t_start - t0, 4),
                "replica": first.replica, "missing_from": state.missing_n,
                "by_replica": dict(state.missing_by),
                "read": evidence(first, t0),
                "message": f"{fmt(element)} in {key}, known since "
                           f"{state.known_at - t0:.3f} s ({_known(state, t0)}), was missing "
                           f"from every read from {describe(first, t0)} on "
                           f"({state.missing_n} read(s))"}

    def _unexpected(self, key: object, element: Hashable, state: _Element, t0: float) -> dict:
        read = state.last_present
        why = "its only add(s) failed" if state.added_fail else "never added"
        return {"key": key, "element": thaw(element), "t": round(read.t_start - t0, 4),
                "replica": read.replica, "read": evidence(read, t0),
                "message": f"{describe(read, t0)}, with {fmt(element)}: {why}"}


def _known(state: _Element, t0: float) -> str:
    by = state.known_by
    if by is None:
        return "?"
    if by.f in ("add", "append"):
        return f"{by.process} added it on {by.replica or 'an unknown replica'}"
    return f"{by.process} read it on {by.replica or 'an unknown replica'}"


def check_sets(ops: Iterable[Op], t0: float | None = None) -> dict:
    """Lost, stale, unexpected and duplicated elements over a history sorted by ``t_start``.

    Returns ``{"valid": True | False | None, ...}`` with counts and examples in plain words
    (``lost_examples``, ``stale_examples``, ``unexpected_examples``,
    ``duplicate_examples``)."""
    checker = SetChecker(t0)
    for op in ops:
        checker.feed(op)
    return checker.result()
