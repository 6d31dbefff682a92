"""Was every key a linearizable register? A Wing & Gong search, key by key.

Each key is a register (write, read, compare-and-set); a history is
linearizable if every operation can be placed at one instant within its real
span (from ``t_start`` to ``t_end``) so that the register, taken through the
operations in that order, explains every value read. Linearizability is
compositional (Herlihy & Wing's locality, P-compositionality in Lowe's terms),
so each key is checked on its own.

The search is Wing & Gong's depth-first search over the history's call and
return events, with Lowe's memo of (set of operations linearized, register
value) so that no configuration is explored twice, and Lowe's just-in-time
linearization: operations are linearized only as the first return not yet
linearized (the *frontier*) demands, among those called before it. Each
rule below keeps at least one linearization if any exists (they were checked
against a brute-force search on random histories):

- ``fail`` operations surely had no effect and are dropped; an ``unknown``
  read saw nothing and is dropped.
- A compare-and-set whose compare failed (outcome ``ok``, ``seen`` False) changed
  nothing and saw a value other than the one it expected: a read of "anything but
  that value". Like a read, it is linearized at once where the register holds another
  value; where it holds the expected one, a write of any other value may come first.
- A read of the value the register holds (or a failed compare of another) is
  linearized at once, without branching: moving a pending read earlier, to a
  point where its value is held, never breaks a linearization (it is pure, and
  everything that must precede it already has).
- A write is linearized only when it is the frontier, just before an
  operation that reads its value (a read, the old value of a compare-and-set,
  or any other value for a failed compare), or when it writes the value the
  register already holds.
  A write that nothing reads is *absorbed* when it becomes the frontier: it
  sat unread just before the last write linearized after its call (the
  search keeps, per configuration, the time up to which calls may be
  absorbed so).
- An ``unknown`` write never returns: it may take effect at any point after
  its start, or never (Jepsen's ``:info``), so it is linearized only just
  before a reader of its value; unknown writes of one value are
  interchangeable. Unknown compare-and-sets are tried anywhere after their
  start.
- At the end of a history one linearization is enough: the search stops at
  the first.

Memory does not grow with the history. Each key's history is cut into
segments, at a quiescent point (the next operation starts after every
operation of the segment returned) or, failing one, every ``SEGMENT_OPS``
operations. At a cut at time ``s`` the search of the segment is exhaustive
up to ``s``: it collects every *configuration* reachable once all operations
that returned before ``s`` are linearized, namely the register value and which
of the operations still open at ``s`` (called but not returned, and unknown
operations, which never return) are already linearized. The next segment
starts from that set of configurations with the open operations carried
over. This is sound and complete: every linearization of the whole history,
cut after the last operation that returned before ``s``, passes through one
of those configurations (the operations after the cut all started at or
after ``s``, so none of them can precede it), and any configuration extended
by a linearization of the rest is a linearization of the whole. Only the
configurations, the open operations and the current segment are kept; a
configuration is dropped when another has the same value and the same open
operations done, a subset of its unknown operations done and at least its
time for absorbing writes (the other allows everything it allows). Unknown
writes stay carried until linearized in every configuration, since they may
apply at any time: memory grows with the unknown writes never read, a small
share of a run.

The search is bounded per key: ``max_states`` configurations explored and
``budget_s`` seconds, over all of the key's segments. A key whose search hits
either bound is *not checked* (valid None), never a pass.

Evidence for a violation: the first operation that no linearization can
explain (linearizability holds for every prefix of a linearizable history,
so the first return the search cannot get past is where it broke), the values
the register could hold just before it, and the operations around it: those
concurrent with it, the last writes and reads that completed before it, and
the latest write of the value it saw.

``margin`` (s) widens every operation's end, for clocks of different load
generators that may disagree; never past the start of the same process's
next operation on the key, so a process's own operations keep their order.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from loadtest.analysis.history import (
    EXAMPLES,
    FAIL,
    REGISTER_FS,
    UNKNOWN,
    Op,
    cas_pair,
    describe,
    evidence,
    fmt,
    freeze,
    thaw,
)

DEFAULT_MAX_STATES = 1_000_000
DEFAULT_BUDGET_S = 10.0
SEGMENT_OPS = 64          # cut a key's history at least this often, quiescent or not
MAX_CONFIGS = 10_000      # configurations carried across a cut, at most
RECENT = 16               # operations kept per key from earlier segments, for evidence
WINDOW = 12               # operations shown around a violation


_Push = Callable[[int, Hashable, float], None]                  # (lin, state, h)
_Branch = Callable[[int, Hashable, float, int, float, int], None]  # + f, horizon, pending


class _Bound(Exception):
    """The search of a key hit one of its bounds."""


@dataclass(slots=True)
class _Entry:
    serial: int           # per key, in order of arrival
    op: Op
    unknown: bool
    f: str
    arg: Hashable         # write: value; read: value seen; cas: (old, new)
    start: float
    ret: float            # t_end + margin (at most the process's next start); unknown: inf


@dataclass(slots=True)
class _Table:
    """The operations of one search, numbered for bit masks of what is linearized: ok
    operations by return (bit i), so the frontier is the lowest bit not set, then unknown
    ones (bit m + j); and what the search looks up by number or by value."""
    ok: list[_Entry]
    unk: list[_Entry]
    bit_of: dict[int, int]                 # serial -> bit
    ret: list[float]                       # per ok operation
    start: list[float]
    kinds: list[tuple[str, Hashable]]      # (f, arg)
    reads: int                             # mask of the ok reads
    ok_writes: dict[Hashable, list[int]]   # value -> ok writes of it
    unk_writes: dict[Hashable, list[tuple[int, float]]]   # value -> (bit mask, start)
    unk_cas: list[tuple[int, float, Hashable, Hashable]]  # (bit mask, start, old, new)
    differs: int = 0                       # mask of the failed compares ("nocas")


class _Key:
    __slots__ = ("name", "seg", "open", "configs", "max_ret", "last_ok", "recent", "nodes",
                 "seconds", "status", "detail", "serial", "ops", "open_ok")

    def __init__(self, name: str, initial: Hashable) -> None:
        self.name = name
        self.seg: list[_Entry] = []
        self.open: list[_Entry] = []
        self.open_ok = 0          # ok operations among them
        # (value, carried operations already linearized, H: see _search)
        self.configs: list[tuple[Hashable, frozenset, float]] = [
            (initial, frozenset(), -math.inf)]
        self.max_ret = -math.inf
        self.last_ok: dict[str, _Entry] = {}
        self.recent: deque[_Entry] = deque(maxlen=RECENT)
        self.nodes = 0
        self.seconds = 0.0
        self.status: str | None = None    # None: fine so far; "invalid"; "unchecked"
        self.detail: dict | str = ""
        self.serial = 0
        self.ops = 0


class RegisterChecker:
    """Feed register operations in ``t_start`` order; ``result()`` judges every key."""

    def __init__(self, *, initial: object = None, max_states: int = DEFAULT_MAX_STATES,
                 budget_s: float = DEFAULT_BUDGET_S, margin: float = 0.0,
                 t0: float | None = None) -> None:
        self.initial = freeze(initial)
        self.max_states = int(max_states)
        self.budget_s = float(budget_s)
        self.margin = float(margin)
        self.t0 = t0
        self.keys: dict[object, _Key] = {}
        self.counts = {"ok": 0, "unknown": 0, "fail": 0}
        self.last_start = -math.inf
        self.states = 0

    def feed(self, op: Op) -> None:
        if op.f not in REGISTER_FS:
            return
        if op.t_start < self.last_start:
            raise ValueError(f"register operations must arrive sorted by t_start: op "
                             f"#{op.index} starts before the one fed before it")
        self.last_start = op.t_start
        if self.t0 is None:
            self.t0 = op.t_start
        self.counts[op.outcome if op.outcome in self.counts else "unknown"] += 1
        key = self.keys.get(op.key)
        if key is None:
            key = self.keys[op.key] = _Key(str(op.key), self.initial)
        key.ops += 1
        if key.status is not None or op.outcome == FAIL:
            return
        unknown = op.outcome == UNKNOWN
        if unknown and op.f == "read":
            return  # it saw nothing and changed nothing
        if key.seg and (op.t_start > key.max_ret or len(key.seg) >= SEGMENT_OPS):
            self._advance(key, op.t_start)
            if key.status is not None:
                return
        f = op.f
        arg = (freeze(op.seen) if f == "read" else cas_pair(op.value) if f == "cas"
               else freeze(op.value))
        if f == "cas" and not unknown and op.seen is False:
            f, arg = "nocas", arg[0]  # compared and failed: saw anything but arg
        prev = key.last_ok.get(op.process)
        if prev is not None and prev.ret >= op.t_start and prev.op.t_end < op.t_start:
            # The margin never lets a process's operation overlap its next one.
            prev.ret = math.nextafter(op.t_start, -math.inf)
        ret = math.inf if unknown else op.t_end + self.margin
        entry = _Entry(key.serial, op, unknown, f, arg, op.t_start, ret)
        key.seg.append(entry)
        key.serial += 1
        if not unknown:
            key.last_ok[op.process] = entry
        if not unknown and ret > key.max_ret:
            key.max_ret = ret

    def result(self) -> dict:
        for key in self.keys.values():
            if key.status is None and (key.seg or any(not e.unknown for e in key.open)):
                self._advance(key, math.inf)
        return self._summary()

    # -- the search ---------------------------------------------------------------------

    def _advance(self, key: _Key, stop_at: float) -> None:
        """Search the key's open operations and segment up to ``stop_at``; carry the rest."""
        if len(key.seg) == 1 and len(key.configs) == 1 and not key.open_ok and \
                self._step_alone(key, stop_at):
            return
        entries = key.open + key.seg
        started = time.perf_counter()
        try:
            if key.seconds >= self.budget_s:
                raise _Bound(f"its time budget of {self.budget_s:g} s ran out")
            outcome = self._search(key, entries, stop_at)
        except _Bound as bound:
            key.status, key.detail = "unchecked", str(bound)
            key.seg, key.open, key.configs = [], [], []
            return
        finally:
            key.seconds += time.perf_counter() - started
        key.recent.extend(e for e in key.seg)
        if isinstance(outcome, dict):
            key.status, key.detail = "invalid", outcome
            key.seg, key.open, key.configs = [], [], []
            return
        key.open, key.configs = outcome
        key.open_ok = sum(1 for e in key.open if not e.unknown)
        key.seg = []
        key.max_ret = max((e.ret for e in key.open if not e.unknown), default=-math.inf)

    def _step_alone(self, key: _Key, stop_at: float) -> bool:
        """The common case, one operation alone from one known value: no search needed.
        Unknown operations still carried stay carried: applying some of them first could
        only reach the same value with fewer of them left. False when it does not apply
        (or does not fit: the search then says why)."""
        e = key.seg[0]
        if e.unknown or e.ret >= stop_at:
            return False
        state = key.configs[0][0]
        if e.f == "write":
            state = e.arg
        elif e.f == "read":
            if state != e.arg:
                return False
        elif e.f == "nocas":
            if state == e.arg:
                return False
        elif state == e.arg[0]:
            state = e.arg[1]
        else:
            return False
        key.configs = [(state, key.configs[0][1], -math.inf)]
        key.recent.append(e)
        key.seg = []
        key.max_ret = -math.inf
        key.nodes += 1
        self.states += 1
        return True

    def _search(self, key: _Key, entries: list[_Entry], stop_at: float):
        """Search the key's configurations through ``entries`` up to the cut at ``stop_at``.

        Returns the operations and configurations to carry across the cut, or the evidence
        of a violation (a dict); raises _Bound when the search hits a bound."""
        table = _number(entries)
        best: dict[tuple[int, Hashable], float] = {}   # (linearized, value) -> highest H
        stack: list[tuple[int, Hashable, float]] = []
        push = _pusher(best, stack)
        bit_of = table.bit_of
        for state, done, h in key.configs:
            push(sum(1 << bit_of[s] for s in done if s in bit_of), state, h)
        finals, deepest, deepest_states = self._explore(key, table, stop_at, best, stack, push)
        if not finals:
            return self._violation(key, entries, table.ok[deepest] if deepest >= 0 else None,
                                   deepest_states)
        return _carry(table, finals, stop_at)

    def _explore(self, key: _Key, table: _Table, stop_at: float,
                 best: dict[tuple[int, Hashable], float],
                 stack: list[tuple[int, Hashable, float]], push: _Push) -> tuple[list, int, set]:
        """The depth-first search itself, from the stacked configurations: the hot loop, so
        the tables it reads are locals and a configuration costs one call besides its pushes.

        Returns the configurations that reached the cut (at the end of the history, the
        first is enough), and the deepest frontier reached with up to 10 values the register
        could hold there: where a violation is, if none reached the cut."""
        ret, kinds, reads, m = table.ret, table.kinds, table.reads, len(table.ok)
        differs = table.differs
        okmask = (1 << m) - 1
        branch = _brancher(table, push)
        finals: list[tuple[int, Hashable, float]] = []
        deepest, deepest_states = -1, set()
        cands: dict[int, int] = {}   # frontier -> operations called before it returned
        nodes = 0
        limit = self.max_states - key.nodes
        clock = time.perf_counter
        deadline = clock() + max(0.0, self.budget_s - key.seconds)
        while stack:
            lin, state, h = stack.pop()
            if best[(lin, state)] > h:
                continue  # explored again with more writes it may absorb
            nodes += 1
            if nodes > limit or not nodes & 1023 and clock() > deadline:
                raise self._out_of_bounds(key, nodes, nodes > limit)
            free = ~lin & okmask
            f = (free & -free).bit_length() - 1 if free else m
            if f == m or ret[f] >= stop_at:
                finals.append((lin, state, h))
                if stop_at == math.inf:
                    break  # the end of the history: one linearization is enough
                continue
            if f > deepest:
                deepest, deepest_states = f, {state}
            elif f == deepest and len(deepest_states) < 10:
                deepest_states.add(state)
            horizon = ret[f]
            mask = cands.get(f)
            if mask is None:
                mask = cands[f] = _called_by(table.start, f, horizon)
            pending = mask & ~lin
            # 1. Reads of the current value, failed compares of another: linearized now,
            # without branching.
            eager, rest = 0, pending & reads
            while rest:
                low = rest & -rest
                rest ^= low
                j = low.bit_length() - 1
                if kinds[j][1] == state:
                    eager |= low
            rest = pending & differs
            while rest:
                low = rest & -rest
                rest ^= low
                if kinds[low.bit_length() - 1][1] != state:
                    eager |= low
            if eager:
                push(lin | eager, state, h)
                continue
            branch(lin, state, h, f, horizon, pending)
        self._tally(key, nodes)
        return finals, deepest, deepest_states

    def _tally(self, key: _Key, nodes: int) -> None:
        """Count the configurations a search explored, for the key's bound and the total."""
        key.nodes += nodes
        self.states += nodes

    def _out_of_bounds(self, key: _Key, nodes: int, states: bool) -> _Bound:
        """The search stops at a bound: the configurations explored (``states``) or time."""
        self._tally(key, nodes)
        if states:
            return _Bound(f"the search explored {self.max_states:,} configurations "
                          "(max_states)")
        return _Bound(f"its time budget of {self.budget_s:g} s ran out")

    def _violation(self, key: _Key, entries: list[_Entry], bad: _Entry | None,
                   states: set) -> dict:
        t0 = self.t0 or 0.0
        if bad is None:  # cannot happen: the search always starts from a configuration
            return {"key": key.name, "message": "no configuration to start from", "ops": []}
        x = bad.op
        pool = {id(e.op): e.op for e in list(key.recent) + entries}
        ops = list(pool.values())
        window = {id(x): x}
        for op in ops:  # concurrent with it
            if op is not x and op.t_start <= x.t_end and (op.outcome == UNKNOWN
                                                          or op.t_end >= x.t_start):
                window[id(op)] = op
        before = sorted((op for op in ops if op.outcome != UNKNOWN and op.t_end < x.t_start),
                        key=lambda op: op.t_end)
        for fs in (("write", "cas"), ("read",)):
            for op in [op for op in before if op.f in fs][-2:]:
                window[id(op)] = op
        wanted = bad.arg if bad.f in ("read", "nocas") else bad.arg[0] if bad.f == "cas" \
            else None
        writers = [op for op in ops if op.t_start <= x.t_end and op is not x and (
            (op.f == "write" and freeze(op.value) == wanted)
            or (op.f == "cas" and op.seen is not False
                and cas_pair(op.value)[1] == wanted))] if bad.f != "nocas" else []
        if writers:
            latest = max(writers, key=lambda op: op.t_start)
            window[id(latest)] = latest
        nearest = sorted(window.values(), key=lambda op: abs(op.t_start - x.t_start))[:WINDOW]
        shown = sorted(nearest, key=lambda op: (op.t_start, op.index))
        could = sorted((fmt(s) for s in states), key=str)
        seen = fmt(wanted)
        what = "read" if bad.f == "read" else "expected"
        message = (f"{describe(x, t0)}: no order of the operations on {key.name} explains it; "
                   f"just before, it could only hold {', '.join(could) or 'nothing'}, never "
                   f"the {seen} {what}")
        if bad.f == "nocas":
            message = (f"{describe(x, t0)}: no order of the operations on {key.name} explains "
                       f"a failed compare; just before, it could only hold the {seen} it "
                       "expected")
        elif not writers and wanted != self.initial:
            message += f" (no write of {seen} among the operations kept)"
        return {"key": key.name, "t": round(x.t_end - t0, 4), "op": evidence(x, t0),
                "replica": x.replica, "process": x.process,
                "could_hold": [thaw(s) for s in sorted(states, key=str)],
                "ops": [evidence(op, t0) for op in shown], "message": message}

    def _summary(self) -> dict:
        invalid = sorted((k.detail for k in self.keys.values() if k.status == "invalid"),
                         key=lambda d: d.get("t", 0))
        unchecked = [{"key": k.name, "reason": k.detail} for k in self.keys.values()
                     if k.status == "unchecked"]
        n_ops = sum(self.counts.values())
        out = {
            "ops": n_ops, **self.counts, "keys": len(self.keys),
            "keys_valid": sum(1 for k in self.keys.values() if k.status is None),
            "keys_invalid": len(invalid), "keys_not_checked": len(unchecked),
            "states_explored": self.states,
            "max_states": self.max_states, "budget_s": self.budget_s,
            "violations": invalid[:EXAMPLES], "not_checked": unchecked[:EXAMPLES],
        }
        if invalid:
            out["valid"] = False
        elif unchecked:
            out["valid"] = None
            first = unchecked[0]
            out["reason"] = (f"{len(unchecked)} key(s) not checked: {first['key']}: "
                             f"{first['reason']}")
        elif not n_ops:
            out["valid"], out["reason"] = None, "no register operations"
        elif self.counts["ok"] == 0:
            out["valid"], out["reason"] = None, "no register operation had a known outcome"
        else:
            out["valid"] = True
        return out


def _number(entries: list[_Entry]) -> _Table:
    """Number the operations of a search (see _Table), once before it starts."""
    ok = sorted((e for e in entries if not e.unknown), key=lambda e: (e.ret, e.start))
    unk = [e for e in entries if e.unknown]
    m = len(ok)
    bit_of = {e.serial: i for i, e in enumerate(ok)}
    bit_of.update({e.serial: m + j for j, e in enumerate(unk)})
    ok_writes: dict[Hashable, list[int]] = {}
    for i, e in enumerate(ok):
        if e.f == "write":
            ok_writes.setdefault(e.arg, []).append(i)
    unk_writes: dict[Hashable, list[tuple[int, float]]] = {}
    unk_cas = []
    for j, e in enumerate(unk):
        if e.f == "write":
            unk_writes.setdefault(e.arg, []).append((1 << (m + j), e.start))
        elif e.f == "cas":
            unk_cas.append((1 << (m + j), e.start, e.arg[0], e.arg[1]))
    return _Table(ok, unk, bit_of, ret=[e.ret for e in ok], start=[e.start for e in ok],
                  kinds=[(e.f, e.arg) for e in ok],
                  reads=sum(1 << i for i, e in enumerate(ok) if e.f == "read"),
                  ok_writes=ok_writes, unk_writes=unk_writes, unk_cas=unk_cas,
                  differs=sum(1 << i for i, e in enumerate(ok) if e.f == "nocas"))


def _pusher(best: dict[tuple[int, Hashable], float],
            stack: list[tuple[int, Hashable, float]]) -> _Push:
    """``push(lin, state, h)``: stack a configuration unless Lowe's memo has it already
    with at least that time for absorbing writes."""
    def push(lin: int, state: Hashable, h: float) -> None:
        node = (lin, state)
        if node in best and best[node] >= h:
            return
        best[node] = h
        stack.append((lin, state, h))
    return push


def _called_by(start: list[float], f: int, horizon: float) -> int:
    """Mask of the ok operations from the frontier ``f`` on that were called by its return
    (``horizon``): the only ones that may be linearized before it."""
    mask = 0
    for j in range(f, len(start)):
        if start[j] <= horizon:
            mask |= 1 << j
    return mask


def _brancher(table: _Table, push: _Push) -> _Branch:
    """``branch(lin, state, h, f, horizon, pending)``: push the configurations that follow
    one with no pending read of the current value (steps 2 to 5). A closure over the
    table, so the search's hot loop reads it as fast as its own locals."""
    start, kinds, ok_writes = table.start, table.kinds, table.ok_writes
    unk_writes, unk_cas = table.unk_writes, table.unk_cas

    def branch(lin: int, state: Hashable, h: float, f: int, horizon: float,
               pending: int) -> None:
        # 2. The first operation to return: it must be linearized now.
        need: set[Hashable] = set()
        other = False  # a failed compare waits for any value but the one held
        fbit = 1 << f
        fname, farg = kinds[f]
        if fname == "write":
            push(lin | fbit, farg, horizon)
            if start[f] <= h:  # unread, it sat just before the last write: no effect
                push(lin | fbit, state, h)
        elif fname == "read":
            need.add(farg)
        elif fname == "nocas":
            if farg != state:
                push(lin | fbit, state, h)
            else:
                other = True
        elif state == farg[0]:
            push(lin | fbit, farg[1], h)
        else:
            need.add(farg[0])
        # 3. Other operations called before it: a compare-and-set that applies, and
        # the values that pending reads and compare-and-sets wait for.
        rest = pending & ~fbit
        while rest:
            low = rest & -rest
            rest ^= low
            j = low.bit_length() - 1
            kind, arg = kinds[j]
            if kind == "read":
                need.add(arg)
            elif kind == "nocas":
                other = other or arg == state
            elif kind == "cas":
                if state == arg[0]:
                    push(lin | low, arg[1], h)
                else:
                    need.add(arg[0])
        for ubit, ustart, old, new in unk_cas:
            if lin & ubit or ustart > horizon:
                continue
            if state == old:
                push(lin | ubit, new, h)
            else:
                need.add(old)
        # 4. A write of a value waited for, just in time for its readers; for a failed
        # compare, a write of any other value.
        if other:
            need.update(v for v in ok_writes if v != state)
            need.update(v for v in unk_writes if v != state)
        for value in need:
            if value == state:
                continue
            for j in ok_writes.get(value, ()):
                low = 1 << j
                if pending & low:
                    push(lin | low, value, horizon)
            for ubit, ustart in unk_writes.get(value, ()):
                if not lin & ubit and ustart <= horizon:
                    push(lin | ubit, value, horizon)
                    break  # unknown writes of one value are interchangeable
        # 5. A write of the value the register holds: it changes nothing now, and the
        # writes called before it may sit, unread, just before it.
        for j in ok_writes.get(state, ()):
            low = 1 << j
            if pending & low and j != f:
                push(lin | low, state, horizon)
    return branch


def _carry(table: _Table, finals: list[tuple[int, Hashable, float]],
           stop_at: float) -> tuple[list[_Entry], list]:
    """What crosses the cut at ``stop_at``: the operations still open there and the
    configurations reached (unknown operations linearized in all of them are done with),
    pruned; _Bound if too many."""
    bit_of, unk = table.bit_of, table.unk
    carried = [e for e in table.ok if e.ret >= stop_at] + unk
    open_writes = sorted(e.start for e in carried if not e.unknown and e.f == "write")
    configs = {(state, frozenset(e.serial for e in carried if lin >> bit_of[e.serial] & 1),
                _absorbing(h, open_writes))
               for lin, state, h in finals}
    done_everywhere = frozenset.intersection(*(d for _, d, _ in configs))
    gone = {e.serial for e in unk if e.serial in done_everywhere}
    if gone:
        carried = [e for e in carried if e.serial not in gone]
        configs = {(s, d - gone, h) for s, d, h in configs}
    kept = list(configs) if len(configs) == 1 else \
        _prune(configs, {e.serial for e in carried if e.unknown})
    if len(kept) > MAX_CONFIGS:
        raise _Bound(f"more than {MAX_CONFIGS:,} configurations to carry across a cut")
    return carried, kept


def _absorbing(h: float, open_writes: list[float]) -> float:
    """``h`` reduced to what matters after a cut: the latest start, at or before it, of an
    open write (only those can still be absorbed); -inf if none."""
    i = bisect.bisect_right(open_writes, h)
    return open_writes[i - 1] if i else -math.inf


def _prune(configs: set[tuple[Hashable, frozenset, float]], unknowns: set[int]) -> list:
    """Drop a configuration when another has the same value and the same open operations
    done, a subset of its unknown operations done and as many writes it may absorb (so
    it allows all it allows)."""
    groups: dict[tuple, list[tuple[frozenset, float]]] = {}
    for state, done, h in configs:
        groups.setdefault((state, done - unknowns), []).append((done & unknowns, h))
    kept = []
    for (state, fixed), options in groups.items():
        options.sort(key=lambda o: (len(o[0]), -o[1]))
        best: list[tuple[frozenset, float]] = []
        for used, h in options:
            if not any(b <= used and bh >= h for b, bh in best):
                best.append((used, h))
        kept.extend((state, fixed | used, h) for used, h in best)
    return kept


def check_register(ops: Iterable[Op], **options) -> dict:
    """Linearizability of every key's register over a history sorted by ``t_start``.

    Options: ``initial`` (the value of a key never written, None), ``max_states`` and
    ``budget_s`` (per key), ``margin`` (s), ``t0`` (what times are counted from).
    Returns ``{"valid": True | False | None, ...}`` with counts, ``violations`` (one per
    invalid key, first first) and ``not_checked`` (key and reason)."""
    checker = RegisterChecker(**options)
    for op in ops:
        checker.feed(op)
    return checker.result()
