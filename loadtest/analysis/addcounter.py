"""Did every counter read what its adds allow? Jepsen's counter checker, key by key.

A counter (a like count, a stock level, a balance) is changed by ``incr`` operations that
add an integer (``value``; negative to take away) and read by ``read-counter``
operations (``seen``: the count; None reads as 0, a counter never written). Each key
starts at ``initial`` (0). As Jepsen's ``counter`` checker does, each read must lie
within the bounds real time allows:

- at least ``initial`` + every positive add acknowledged before the read began + every
  negative add (acknowledged or not) begun before the read ended;
- at most ``initial`` + every positive add (acknowledged or not) begun before the read
  ended + every negative add acknowledged before the read began.

An add answered ``fail`` surely did not happen and counts nowhere; an ``unknown`` one
may have happened once, at any time after it began. A read below its lower bound lost
an add that had been acknowledged (*lost*: a read-modify-write that raced, a replica's
own copy); a read above its upper bound counts adds no request explains (*extra*: an
add applied twice, as a retried non-idempotent command does). The bounds are necessary,
not sufficient: two reads that each fit may still disagree in order; the register
checker is the one that asks for one order.

Each violation names the read, the replica that served it, and the bound it broke with
the adds behind it. Lost is judged on the reads that began after an add was
acknowledged; with none there was nothing to lose, and it says so (*not checked*).

Operations arrive sorted by ``t_start``. A read is judged once an operation starts after
it ended (every add begun before its end has been fed by then): memory is the reads and
acknowledged adds still in flight, per key.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from loadtest.analysis.history import COUNTER_FS, EXAMPLES, FAIL, OK, Op, describe, evidence

NOTHING_TO_LOSE = ("no read began after an add was acknowledged: there was nothing it "
                   "could have lost")


@dataclass
class _Key:
    """What one counter's reads are judged against, as the history streams by."""
    begun_up: int = 0        # positive adds (ok or unknown) begun so far
    begun_down: int = 0      # negative adds (ok or unknown) begun so far
    done_up: int = 0         # positive adds acknowledged before the latest read began
    done_down: int = 0       # negative adds acknowledged before the latest read began
    ending: list = field(default_factory=list)    # heap (t_end, tie, n) of ok adds


class CounterChecker:
    """Feed ``incr`` and ``read-counter`` operations in ``t_start`` order; ``result()``
    judges every read."""

    def __init__(self, *, initial: int = 0, t0: float | None = None) -> None:
        self.initial = int(initial)
        self.t0 = t0
        self.keys: dict[object, _Key] = {}
        self.waiting: list = []  # heap (t_end, tie, key, read, done_up, done_down)
        self.counts = Counter()
        self.judged = Counter()          # lost, extra
        self.violations = {"lost": 0, "extra": 0}
        self.examples: dict[str, list[dict]] = {"lost": [], "extra": []}
        self.by_replica = {"lost": Counter(), "extra": Counter()}
        self.keys_failed: set = set()
        self.tie = 0
        self.last_start = -math.inf

    def feed(self, op: Op) -> None:
        if op.f not in COUNTER_FS:
            return
        if op.t_start < self.last_start:
            raise ValueError(f"counter operations must arrive sorted by t_start: op "
                             f"#{op.index} starts before the one fed before it")
        self.last_start = op.t_start
        if self.t0 is None:
            self.t0 = op.t_start
        self._judge_until(op.t_start)
        self.counts[f"{op.f}:{op.outcome}"] += 1
        key = self.keys.setdefault(op.key, _Key())
        if op.outcome == FAIL:
            return
        if op.f == "incr":
            n = int(op.value)
            if n >= 0:
                key.begun_up += n
            else:
                key.begun_down += n
            if op.outcome == OK:
                self.tie += 1
                heapq.heappush(key.ending, (op.t_end, self.tie, n))
            return
        if op.outcome != OK:
            return  # an unknown read saw nothing
        while key.ending and key.ending[0][0] < op.t_start:  # acknowledged before it began
            _, _, n = heapq.heappop(key.ending)
            if n >= 0:
                key.done_up += n
            else:
                key.done_down += n
        self.tie += 1
        heapq.heappush(self.waiting, (op.t_end, self.tie, op.key, op, key.done_up,
                                      key.done_down))

    def _judge_until(self, now: float) -> None:
        """Judge every read that ended before ``now``: no add begun later concerns it."""
        while self.waiting and self.waiting[0][0] < now:
            _, _, name, read, done_up, done_down = heapq.heappop(self.waiting)
            self._judge(name, self.keys[name], read, done_up, done_down)

    def _judge(self, name: object, key: _Key, read: Op, done_up: int, done_down: int) -> None:
        low = self.initial + done_up + key.begun_down
        high = self.initial + key.begun_up + done_down
        seen = read.seen if read.seen is not None else 0
        if isinstance(seen, bool) or not isinstance(seen, int | float):
            return  # not a count (state_history refuses it): nothing to judge
        self.judged["extra"] += 1
        if done_up:
            self.judged["lost"] += 1
        if seen < low:
            self._violation("lost", name, read,
                            f"below {low}, what the adds acknowledged before it began make "
                            f"(+{done_up}, with every take-away begun by its end: "
                            f"{key.begun_down})", low, high)
        elif seen > high:
            self._violation("extra", name, read,
                            f"above {high}, the most every add begun by its end could make "
                            f"(+{key.begun_up}, acknowledged take-aways {done_down}): adds "
                            "counted that no request explains", low, high)

    def _violation(self, kind: str, key: object, read: Op, why: str, low: int,
                   high: int) -> None:
        t0 = self.t0 or 0.0
        self.violations[kind] += 1
        self.by_replica[kind][read.replica] += 1
        self.keys_failed.add(key)
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append({
                "key": key, "replica": read.replica, "process": read.process,
                "t": round(read.t_start - t0, 4), "seen": read.seen, "low": low, "high": high,
                "read": evidence(read, t0), "message": f"{describe(read, t0)}: {why}"})

    def result(self) -> dict:
        self._judge_until(math.inf)
        reads = sum(v for k, v in self.counts.items() if k.startswith("read-counter:"))
        adds = sum(v for k, v in self.counts.items() if k.startswith("incr:"))
        out = {"ops": reads + adds, "adds": adds, "reads": reads, "keys": len(self.keys),
               "counts": dict(self.counts), "keys_failed": sorted(map(str, self.keys_failed))}
        for kind in ("lost", "extra"):
            judged, bad = self.judged[kind], self.violations[kind]
            entry = {"judged": judged, "violations": bad,
                     "by_replica": dict(self.by_replica[kind]),
                     "examples": self.examples[kind]}
            if bad:
                entry["valid"] = False
            elif not reads + adds:
                entry["valid"], entry["reason"] = None, "no counter operations"
            elif not judged:
                entry["valid"], entry["reason"] = None, (
                    NOTHING_TO_LOSE if kind == "lost" and self.judged["extra"] else
                    "no read of a counter had a known outcome")
            else:
                entry["valid"] = True
            out[kind] = entry
        return out


def check_counters(ops: Iterable[Op], **options) -> dict:
    """Every counter read against the bounds of its adds, over a history sorted by
    ``t_start``. Options: ``initial`` (0), ``t0``. Returns ``{"lost": {...}, "extra":
    {...}}``, each ``{"valid", "judged", "violations", "by_replica", "examples"}``."""
    checker = CounterChecker(**options)
    for op in ops:
        checker.feed(op)
    return checker.result()
