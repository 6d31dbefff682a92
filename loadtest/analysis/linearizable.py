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
linearization: operations are linearized only as far as the first return not
yet linearized demands (everything called before it is a candidate, nothing
called after it). Two reductions keep it small:

- ``fail`` operations surely had no effect and are dropped; an ``unknown``
  read saw nothing and is dropped.
- An ``unknown`` write never returns: it may take effect at any point after
  its start, or never (Jepsen's ``:info``). Such a write is linearized only
  immediately before an operation that reads its value (a read, or the old
  value of a compare-and-set). This loses nothing: in any linearization, an
  unknown write that is read can be moved forward to just before its first
  reader (nothing between them observes the register, or the write would
  have been overwritten or read earlier), and one that is overwritten before
  anything reads it can be left out. Unknown compare-and-sets are tried
  anywhere after their start.

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
configuration whose unknown operations are a superset of another's, with the
same value and the same open operations done, is dropped (the other allows
everything it allows). Unknown writes stay carried until linearized in every
configuration, since they may apply at any time: memory grows with the
unknown writes never read, a small share of a run.

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
generators that may disagree; a process's own operations keep their order.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Hashable, Iterable
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
    ret: float            # t_end + margin; infinite for an unknown operation
    pred: int             # serial of the process's previous ok op that ended before this began


class _Key:
    __slots__ = ("name", "seg", "open", "configs", "max_ret", "last_ok", "recent", "nodes",
                 "seconds", "status", "detail", "serial", "ops")

    def __init__(self, name: str, initial: Hashable) -> None:
        self.name = name
        self.seg: list[_Entry] = []
        self.open: list[_Entry] = []
        self.configs: list[tuple[Hashable, frozenset]] = [(initial, frozenset())]
        self.max_ret = -math.inf
        self.last_ok: dict[str, tuple[int, float]] = {}
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
        arg = (freeze(op.seen) if op.f == "read" else cas_pair(op.value) if op.f == "cas"
               else freeze(op.value))
        pred = -1
        if not unknown:
            prev = key.last_ok.get(op.process)
            if prev is not None and prev[1] < op.t_start:
                pred = prev[0]
            key.last_ok[op.process] = (key.serial, op.t_end)
        ret = math.inf if unknown else op.t_end + self.margin
        key.seg.append(_Entry(key.serial, op, unknown, op.f, arg, op.t_start, ret, pred))
        key.serial += 1
        if not unknown:
            key.max_ret = max(key.max_ret, ret)

    def result(self) -> dict:
        for key in self.keys.values():
            if key.status is None and (key.seg or any(not e.unknown for e in key.open)):
                self._advance(key, math.inf)
        return self._summary()

    # -- the search ---------------------------------------------------------------------

    def _advance(self, key: _Key, stop_at: float) -> None:
        """Search the key's open operations and segment up to ``stop_at``; carry the rest."""
        entries = key.open + key.seg
        started = time.perf_counter()
        try:
            if key.seconds > self.budget_s:
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
        key.seg = []
        key.max_ret = max((e.ret for e in key.open if not e.unknown), default=-math.inf)

    def _search(self, key: _Key, entries: list[_Entry], stop_at: float):
        ok = sorted((e for e in entries if not e.unknown), key=lambda e: (e.ret, e.start))
        unk = [e for e in entries if e.unknown]
        m = len(ok)
        bit_of = {e.serial: i for i, e in enumerate(ok)}
        bit_of.update({e.serial: m + j for j, e in enumerate(unk)})
        okmask = (1 << m) - 1
        ret = [e.ret for e in ok]
        start = [e.start for e in ok]
        kinds = [(e.f, e.arg) for e in ok]
        predbit = [(1 << bit_of[e.pred]) if e.pred in bit_of else 0 for e in ok]
        unk_writes: dict[Hashable, list[tuple[int, float]]] = {}
        unk_cas = []
        for j, e in enumerate(unk):
            if e.f == "write":
                unk_writes.setdefault(e.arg, []).append((1 << (m + j), e.start))
            elif e.f == "cas":
                unk_cas.append((1 << (m + j), e.start, e.arg[0], e.arg[1]))

        seen: set[tuple[int, Hashable]] = set()
        stack: list[tuple[int, Hashable]] = []
        for state, done in key.configs:
            node = (sum(1 << bit_of[s] for s in done if s in bit_of), state)
            if node not in seen:
                seen.add(node)
                stack.append(node)
        finals: list[tuple[int, Hashable]] = []
        deepest, deepest_states = -1, set()
        cands: dict[int, int] = {}
        nodes = 0
        limit = self.max_states - key.nodes
        clock = time.perf_counter
        deadline = clock() + max(0.0, self.budget_s - key.seconds)

        def child(lin: int, state: Hashable) -> None:
            node = (lin, state)
            if node not in seen:
                seen.add(node)
                stack.append(node)

        while stack:
            lin, state = stack.pop()
            nodes += 1
            if nodes > limit:
                key.nodes += nodes
                self.states += nodes
                raise _Bound(f"the search explored {self.max_states:,} configurations "
                             "(max_states)")
            if not nodes & 1023 and clock() > deadline:
                key.nodes += nodes
                self.states += nodes
                raise _Bound(f"its time budget of {self.budget_s:g} s ran out")
            free = ~lin & okmask
            f = (free & -free).bit_length() - 1 if free else m
            if f == m or ret[f] >= stop_at:
                finals.append((lin, state))
                continue
            if f > deepest:
                deepest, deepest_states = f, {state}
            elif f == deepest and len(deepest_states) < 10:
                deepest_states.add(state)
            horizon = ret[f]
            mask = cands.get(f)
            if mask is None:
                mask = 0
                for j in range(f, m):
                    if start[j] <= horizon:
                        mask |= 1 << j
                cands[f] = mask
            c = mask & ~lin
            while c:
                low = c & -c
                c ^= low
                j = low.bit_length() - 1
                need = predbit[j]
                if need and not lin & need:
                    continue
                fname, arg = kinds[j]
                if fname == "write":
                    child(lin | low, arg)
                    continue
                expect = arg if fname == "read" else arg[0]
                after = arg if fname == "read" else arg[1]
                if state == expect:
                    child(lin | low, after)
                    continue
                for ubit, ustart in unk_writes.get(expect, ()):
                    if not lin & ubit and ustart <= horizon:
                        child(lin | low | ubit, after)  # the unknown write, just in time
                        break
            for ubit, ustart, old, new in unk_cas:
                if lin & ubit or ustart > horizon:
                    continue
                if state == old:
                    child(lin | ubit, new)
                else:
                    for wbit, wstart in unk_writes.get(old, ()):
                        if not lin & wbit and wstart <= horizon:
                            child(lin | ubit | wbit, new)
                            break
        key.nodes += nodes
        self.states += nodes
        if not finals:
            return self._violation(key, entries, ok[deepest] if deepest >= 0 else None,
                                   deepest_states)
        # Carry the operations still open at the cut and the configurations reached.
        carried = [e for e in ok if e.ret >= stop_at] + unk
        configs = {(state, frozenset(e.serial for e in carried if lin >> bit_of[e.serial] & 1))
                   for lin, state in finals}
        done_everywhere = frozenset.intersection(*(d for _, d in configs))
        gone = {e.serial for e in unk if e.serial in done_everywhere}
        if gone:
            carried = [e for e in carried if e.serial not in gone]
            configs = {(s, d - gone) for s, d in configs}
        kept = _prune(configs, {e.serial for e in carried if e.unknown})
        if len(kept) > MAX_CONFIGS:
            raise _Bound(f"more than {MAX_CONFIGS:,} configurations to carry across a cut")
        return carried, kept

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
        wanted = bad.arg if bad.f == "read" else bad.arg[0] if bad.f == "cas" else None
        writers = [op for op in ops if op.t_start <= x.t_end and op is not x and (
            (op.f == "write" and freeze(op.value) == wanted)
            or (op.f == "cas" and cas_pair(op.value)[1] == wanted))]
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
        if not writers and wanted != self.initial:
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


def _prune(configs: set[tuple[Hashable, frozenset]], unknowns: set[int]) -> list:
    """Drop a configuration when another has the same value and the same open operations
    done, and a subset of its unknown operations done (so it allows all it allows)."""
    groups: dict[tuple, list[frozenset]] = {}
    for state, done in configs:
        groups.setdefault((state, done - unknowns), []).append(done & unknowns)
    kept = []
    for (state, fixed), used in groups.items():
        used.sort(key=len)
        minimal: list[frozenset] = []
        for u in used:
            if not any(m <= u for m in minimal):
                minimal.append(u)
        kept.extend((state, fixed | u) for u in minimal)
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
