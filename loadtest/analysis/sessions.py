"""Did each client see its own session the way Terry et al. (1994) promise? And did every
replica honour a login?

**Session guarantees** over register operations (write, read, compare-and-set), per
process (one client: its operations are sequential) and per key. They need an order on
the versions of a key; here a version is the value one write wrote (values should be
unique per key, e.g. the process and a sequence number: a value written twice is
ambiguous, and is judged only where every write of it gives the same answer). The order
used is what is certain: the key's initial value (``initial``, what a read of an absent
key sees) comes before every write, and a write that ended before another began comes
before it (``margin`` s of clock disagreement allowed). A write whose outcome is unknown
may take effect at any time after it began, so it is never "certainly older".

- **read-your-writes**: after a process's acknowledged write of v, its reads of the key
  never return a version certainly older than v.
- **monotonic reads**: a process's read never returns a version certainly older than
  one its earlier reads returned.
- **monotonic writes**: a process's acknowledged writes are seen in the order it made
  them: no process reads its later write and then its earlier one.
- **writes-follow-reads**: a write made after reading v follows v: no process reads that
  write and then v (or a version certainly older than v).

A read counts as *judged* only where the order can decide it: a read of a version whose
place in the order against the one it is compared with is unknown (a value written by
several writes, writes that overlapped) is neither a pass nor a violation. A guarantee
with no read judged is *not checked*, never a pass.

A compare-and-set that swapped read its expected value and wrote its new one; one whose
compare failed wrote nothing and saw some other value than the one it expected: after
the process's own acknowledged write of that value, with no other write that could have
come between, that is a read-your-writes violation.

Each violation names the read that broke it and the replica that served it. What this
cannot see: guarantees across keys (a read of one key and a write of another), an order
between writes that overlapped in time and were never read in sequence by one process,
and a replica that applied writes out of order where nobody read both. A monotonic-writes
violation is also a monotonic-reads violation of the reader; it is reported under both,
once for the writer's session and once for the reader's.

**Login sessions**: after a successful ``login`` by a process (``value`` the user), each
of its later ``session`` operations must see that user: a 401 or 403, a redirect (3xx),
or a 2xx answer that names no user or another user is a violation, named by the replica
that answered. Answers that say nothing about the session (no response, 5xx, other 4xx)
are not judged; after a login whose outcome is unknown the process is not judged until
its next successful login.

Memory: the session guarantees keep the register operations until ``result()`` (a read
may see a write that began after it did, so a read is judged only once the history is
complete); the login check streams.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Hashable, Iterable

from loadtest.analysis.history import (
    EXAMPLES,
    FAIL,
    LOGIN_FS,
    OK,
    REGISTER_FS,
    UNKNOWN,
    Op,
    cas_pair,
    describe,
    evidence,
    fmt,
    freeze,
)

GUARANTEES = ("read_your_writes", "monotonic_reads", "monotonic_writes",
              "writes_follow_reads")
REMEMBERED = 8  # versions a process's later reads are compared with (the latest ones)


class _Tally:
    def __init__(self) -> None:
        self.judged = 0
        self.count = 0
        self.by_replica: Counter = Counter()
        self.examples: list[dict] = []

    def violation(self, read: Op, message: str, against: Op, t0: float) -> None:
        self.count += 1
        self.by_replica[read.replica] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"key": read.key, "process": read.process,
                                  "replica": read.replica, "t": round(read.t_start - t0, 4),
                                  "read": evidence(read, t0), "against": evidence(against, t0),
                                  "message": message})

    def result(self, nothing: str) -> dict:
        out = {"judged": self.judged, "violations": self.count,
               "by_replica": dict(self.by_replica), "examples": self.examples}
        if self.count:
            out["valid"] = False
        elif not self.judged:
            out["valid"], out["reason"] = None, nothing
        else:
            out["valid"] = True
        return out


class SessionGuarantees:
    """Feed register operations in any order; ``result()`` judges the four guarantees."""

    def __init__(self, *, initial: object = None, margin: float = 0.0,
                 t0: float | None = None) -> None:
        self.initial = freeze(initial)
        self.margin = float(margin)
        self.t0 = t0
        self.ops: list[Op] = []

    def feed(self, op: Op) -> None:
        if op.f in REGISTER_FS and op.outcome != FAIL:
            if self.t0 is None or op.t_start < self.t0:
                self.t0 = op.t_start
            self.ops.append(op)

    def result(self) -> dict:
        t0 = self.t0 or 0.0
        ops = sorted(self.ops, key=lambda op: (op.t_start, op.index))
        writes: dict[object, dict[Hashable, list[Op]]] = {}
        steps: dict[tuple[str, object], list[tuple[str, Hashable, Op]]] = {}
        for op in ops:
            seq = steps.setdefault((op.process, op.key), [])
            if op.f == "write":
                value = freeze(op.value)
                writes.setdefault(op.key, {}).setdefault(value, []).append(op)
                seq.append(("w" if op.outcome == OK else "u", value, op))
            elif op.f == "cas":
                old, new = cas_pair(op.value)
                if op.outcome == OK and op.seen is False:
                    seq.append(("n", old, op))  # compared and failed: saw anything but old
                    continue
                if op.outcome == OK:
                    seq.append(("r", old, op))
                writes.setdefault(op.key, {}).setdefault(new, []).append(op)
                seq.append(("w" if op.outcome == OK else "u", new, op))
            elif op.outcome == OK:
                seq.append(("r", freeze(op.seen), op))
        order = _Order(writes, self.initial, self.margin)
        tallies = {name: _Tally() for name in GUARANTEES}
        position: dict[int, int] = {}          # id(write) -> its place in its process's writes
        depends: dict[int, tuple[Hashable, Op]] = {}  # id(write) -> (value read before, read)
        for seq in steps.values():
            n, last_read = 0, None
            for kind, value, op in seq:
                if kind == "w":
                    position[id(op)] = n
                    n += 1
                    if last_read is not None:
                        depends[id(op)] = last_read
                elif kind == "r":
                    last_read = (value, op)
        for (_, key), seq in steps.items():
            _own(seq, order, key, tallies, t0)
            _reader(seq, order, key, position, depends, tallies, t0)
        nothing = {
            "read_your_writes": "no process read a key after writing it",
            "monotonic_reads": "no process read a key twice",
            "monotonic_writes": "no process read two versions written by one process",
            "writes_follow_reads": "no process read a version written after a read",
        }
        out = {name: tallies[name].result(nothing[name]) for name in GUARANTEES}
        out["ops"] = len(self.ops)
        return out


class _Order:
    """The certain part of a key's version order (see the module's docstring)."""

    def __init__(self, writes: dict, initial: Hashable, margin: float) -> None:
        self.writes, self.initial, self.margin = writes, initial, margin
        self._spans: dict[object, tuple[list[float], list[tuple]]] = {}

    def writers(self, key: object, value: Hashable) -> list[Op]:
        return self.writes.get(key, {}).get(value, [])

    def version(self, key: object, value: Hashable) -> bool:
        """Does ``value`` name one version: written by one write, or the initial value
        never written again?"""
        if value == self.initial:
            return not self.writers(key, value)
        return self.unique(key, value) is not None

    def after_write(self, key: object, value: Hashable, write: Op) -> bool:
        """Is the version ``value`` certainly newer than ``write``'s (every write of it
        began after that one ended)?"""
        ws = self.writers(key, value)
        return bool(ws) and write.outcome == OK and all(
            w.t_start > write.t_end + self.margin for w in ws)

    def comparable(self, key: object, value: Hashable, than: Hashable) -> bool:
        """Can the order tell ``value`` from ``than``: the same version, or one certainly
        older than the other?"""
        if value == than:
            return self.version(key, value)
        return self.before(key, value, than) or self.before(key, than, value)

    def could_follow(self, key: object, write: Op, until: float) -> bool:
        """Might a write other than ``write`` (of any value, outcome ok or unknown) have
        taken effect after it and before ``until``? A write that surely ended before
        ``write`` began cannot."""
        starts, best = self._spans.get(key) or self._index(key)
        i = bisect.bisect_right(starts, until)
        if i == 0:
            return False
        (end1, id1), (end2, _) = best[i - 1]
        end = end2 if id1 == id(write) else end1
        return end >= write.t_start

    def _index(self, key: object) -> tuple[list[float], list[tuple]]:
        """The key's writes by start, with the two latest (effective) ends among those
        started so far: an unknown write may end at any time."""
        ws = sorted((w for by_value in self.writes.get(key, {}).values() for w in by_value),
                    key=lambda w: w.t_start)
        starts, best = [], []
        top = [(-math.inf, 0), (-math.inf, 0)]
        for w in ws:
            end = math.inf if w.outcome != OK else w.t_end + self.margin
            if end > top[0][0]:
                top = [(end, id(w)), top[0]]
            elif end > top[1][0]:
                top = [top[0], (end, id(w))]
            starts.append(w.t_start)
            best.append(tuple(top))
        self._spans[key] = (starts, best)
        return starts, best

    def before_write(self, key: object, value: Hashable, write: Op) -> bool:
        """Is the version ``value`` certainly older than ``write``'s?"""
        ws = self.writers(key, value)
        if not ws:
            return value == self.initial
        return all(w.outcome == OK and w.t_end + self.margin < write.t_start for w in ws)

    def before(self, key: object, value: Hashable, than: Hashable) -> bool:
        """Is the version ``value`` certainly older than the version ``than``?"""
        if value == than:
            return False
        later = self.writers(key, than)
        if not later or than == self.initial:
            return False  # nothing is older than the initial value; an unknown one: no judge
        return all(self.before_write(key, value, w) for w in later)

    def unique(self, key: object, value: Hashable) -> Op | None:
        """The one acknowledged write of ``value``, if it has exactly one writer."""
        ws = self.writers(key, value)
        if len(ws) == 1 and ws[0].outcome == OK and value != self.initial:
            return ws[0]
        return None


def _own(seq: list, order: _Order, key: object, tallies: dict, t0: float) -> None:
    """Read-your-writes and monotonic reads: one process against its own past."""
    ryw, mr = tallies["read_your_writes"], tallies["monotonic_reads"]
    last_write: tuple[Hashable, Op] | None = None
    earlier: deque[tuple[Hashable, Op]] = deque(maxlen=REMEMBERED)
    for kind, value, op in seq:
        if kind == "w":
            last_write = (value, op)
            continue
        if kind == "n":
            _failed_compare(op, value, last_write, order, key, ryw, t0)
            continue
        if kind != "r":
            continue
        if last_write is not None:
            wrote, write = last_write
            if value != wrote and order.before_write(key, value, write):
                ryw.judged += 1
                ryw.violation(op, f"{describe(op, t0)}, older than its own write before: "
                                  f"{describe(write, t0)}", write, t0)
            elif (value == wrote and order.unique(key, value) is write) or \
                    order.after_write(key, value, write):
                ryw.judged += 1
        if earlier:
            for was, read in earlier:
                if order.before(key, value, was):
                    mr.judged += 1
                    mr.violation(op, f"{describe(op, t0)}, older than what it read before: "
                                     f"{describe(read, t0)}", read, t0)
                    break
            else:
                if any(order.comparable(key, value, was) for was, _ in earlier):
                    mr.judged += 1
        if not any(v == value for v, _ in earlier):
            earlier.append((value, op))


def _failed_compare(op: Op, expected: Hashable, last_write: tuple[Hashable, Op] | None,
                    order: _Order, key: object, ryw: _Tally, t0: float) -> None:
    """A compare-and-set of the process's that failed, expecting its own last write: a
    read-your-writes violation when no other write could have come between them."""
    if last_write is None or last_write[0] != expected:
        return
    write = last_write[1]
    if order.unique(key, expected) is not write:
        return  # another write of the same value: which one it compared with is unknown
    ryw.judged += 1
    if not order.could_follow(key, write, op.t_end):
        ryw.violation(op, f"{describe(op, t0)}, expecting its own write before, which no "
                          f"other write could have replaced: {describe(write, t0)}",
                      write, t0)


def _reader(seq: list, order: _Order, key: object, position: dict, depends: dict,
            tallies: dict, t0: float) -> None:
    """Monotonic writes and writes-follow-reads: the writers' sessions, as one reader saw
    them."""
    mw, wfr = tallies["monotonic_writes"], tallies["writes_follow_reads"]
    newest: dict[str, tuple[int, Op]] = {}   # writer -> (position, the read that saw it)
    # (v, the version written after reading v, its write, the read that saw it)
    follows: deque[tuple[Hashable, Hashable, Op, Op]] = deque(maxlen=REMEMBERED)
    for kind, value, op in seq:
        if kind != "r":
            continue
        write = order.unique(key, value)
        if write is not None and id(write) in position:
            pos = position[id(write)]
            seen = newest.get(write.process)
            if seen is not None:
                mw.judged += 1
                if pos < seen[0]:
                    mw.violation(op, f"{describe(op, t0)}, written by {write.process} before "
                                     f"a write of its that this process had already read: "
                                     f"{describe(seen[1], t0)}", seen[1], t0)
            if seen is None or pos > seen[0]:
                newest[write.process] = (pos, op)
        if follows:
            for base, written, later, read in follows:
                if value == base or order.before(key, value, base):
                    wfr.judged += 1
                    wfr.violation(op, f"{describe(op, t0)}, although it had read "
                                      f"{fmt(written)}, written by {later.process} after "
                                      f"reading {fmt(base)}: {describe(read, t0)}", read, t0)
                    break
            else:
                if any(value == written or order.before(key, base, value)
                       for base, written, _, _ in follows):
                    wfr.judged += 1
        if write is not None and id(write) in depends:
            base = depends[id(write)][0]
            # Only a version the order can follow: the initial value written again (or a
            # value written twice) may be read again legitimately.
            if base != value and order.version(key, base):
                follows.append((base, value, write, op))


class LoginSessions:
    """Feed login and session operations in ``t_start`` order; ``result()`` judges them."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = t0
        self.user: dict[str, tuple[object, Op] | None] = {}
        self.counts = Counter()
        self.tally = _Tally()

    def feed(self, op: Op) -> None:
        if op.f not in LOGIN_FS:
            return
        if self.t0 is None:
            self.t0 = op.t_start
        t0 = self.t0
        self.counts[op.f] += 1
        if op.f == "login":
            if op.outcome == OK:
                self.user[op.process] = (op.value, op)
            elif op.outcome == UNKNOWN:
                self.user[op.process] = None  # it may or may not hold a session now
            return
        current = self.user.get(op.process)
        if current is None:
            return
        user, login = current
        status = op.status
        if status in (401, 403):
            why = f"answered {status}"
        elif 300 <= status < 400:
            why = f"redirected ({status})"
        elif 200 <= status < 300 and op.outcome == OK:
            if freeze(op.seen) == freeze(user):
                self.tally.judged += 1
                self.counts["honoured"] += 1
                return
            why = "did not know the user" if op.seen is None else f"named {fmt(op.seen)}"
        else:
            self.counts["not_judged"] += 1
            return
        self.tally.judged += 1
        self.tally.violation(op, f"{describe(op, t0)}: {op.replica or 'the replica'} {why}, "
                                 f"after {describe(login, t0)}", login, t0)

    def result(self) -> dict:
        out = self.tally.result("no session request after a successful login")
        out.update(logins=self.counts["login"], session_ops=self.counts["session"],
                   honoured=self.counts["honoured"], not_judged=self.counts["not_judged"])
        return out


def check_session_guarantees(ops: Iterable[Op], **options) -> dict:
    """The four session guarantees over the register operations of a history.

    Options: ``initial``, ``margin`` (s), ``t0``. Returns one result per guarantee
    (``read_your_writes``, ``monotonic_reads``, ``monotonic_writes``,
    ``writes_follow_reads``), each ``{"valid", "judged", "violations", "by_replica",
    "examples"}``."""
    checker = SessionGuarantees(**options)
    for op in ops:
        checker.feed(op)
    return checker.result()


def check_login_sessions(ops: Iterable[Op], t0: float | None = None) -> dict:
    """Was every successful login honoured by every replica that answered afterwards?"""
    checker = LoginSessions(t0)
    for op in ops:
        checker.feed(op)
    return checker.result()
