"""Did the shared counter stay consistent? A Jepsen-style checker over the records.

Every request is classified as Jepsen does an operation:

- ok: a counter value came back;
- fail: it surely never reached the app (connection refused, or the balancer's
  own answer without a replica name: 503 "no server available", 404 "no route",
  which a restarting Traefik gives before it has loaded its routes);
- unknown: anything else without a value (timeouts, resets, 502/504, a Redis
  error inside the app): it may or may not have incremented.

A record may also hide attempts: geventhttpclient resends a request by itself
when a kept-alive connection closes after the request went out; the record's
``attempts`` counts them, and each unseen attempt is one more unknown outcome
(started with the record).

What is checked, with the evidence kept for the report:

- duplicates: a value handed out twice;
- values out of range: at or below the counter read before the run, or above
  what the requests could have produced;
- gaps: a missing value is explained only by an unknown request whose
  increment could have produced it *in real time* (it started before the
  request that returned the next higher value ended); each unknown explains
  at most one missing value;
- reconciliation: ``before + ok ≤ after ≤ before + ok + unknown``; and the
  final counter is not below a value already returned;
- real-time order: if a ended before b started, b's value is above a's. A
  record's start is read before sending and its end when the response reached
  the listener, so within one process "a ended before b started" is certain;
  between processes a clock margin is allowed;
- per-user order: one user's requests are sequential, so its values rise.

A Redis restart without persistence resets the counter; the history is then
checked as *epochs* on each side of the reset, and the reset is named.
Memory: 2 bytes per possible counter value, plus 8 bytes per unknown request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from loadtest.analysis.outcomes import attempts_counted
from loadtest.analysis.passes import Accumulator

if TYPE_CHECKING:
    from loadtest.analysis.passes import Chunk

EXAMPLES = 20
COUNTER_CHECKS = ("duplicates", "unexpected", "gaps", "reconciliation", "final", "order",
                  "user_order")


_NONE = np.iinfo(np.int64).min  # "no value yet" for running maxima


class OrderChecker:
    """Real-time order, fed in ascending ``t_start`` order, a chunk at a time.

    Flags b when some a ended (by more than ``margin``) before b started with a
    value >= b's. Requests that ended long enough ago fold into one running
    maximum; only those still in flight at the chunk's end are kept, so memory
    stays bounded by concurrency, not by the length of the run.
    """

    def __init__(self, margin: float = 0.0) -> None:
        self.margin = margin
        self.carry = _NONE
        self.pend_end = np.empty(0)
        self.pend_val = np.empty(0, dtype=np.int64)

    def feed(self, t_start: np.ndarray, t_end: np.ndarray, values: np.ndarray) -> np.ndarray:
        if len(values) == 0:
            return np.zeros(0, dtype=bool)
        ends = np.concatenate([self.pend_end, t_end])
        vals = np.concatenate([self.pend_val, values])
        order = np.argsort(ends, kind="stable")
        ends_sorted = ends[order]
        running = np.maximum.accumulate(vals[order])
        k = np.searchsorted(ends_sorted, t_start - self.margin, side="left")
        best = np.where(k > 0, running[np.maximum(k - 1, 0)], _NONE)
        flags = np.maximum(best, self.carry) >= values
        cutoff = float(t_start.max()) - self.margin
        done = ends < cutoff
        if done.any():
            self.carry = max(self.carry, int(vals[done].max()))
        self.pend_end, self.pend_val = ends[~done], vals[~done]
        return flags


class Sample:
    """At most ``cap`` points, spread over the whole run (stride doubles when full)."""

    def __init__(self, cap: int = 5000) -> None:
        self.cap, self.stride, self.seen = cap, 1, 0
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, points: np.ndarray) -> None:
        if len(points) == 0:
            return
        index = np.arange(self.seen, self.seen + len(points))
        self.seen += len(points)
        keep = points[index % self.stride == 0]
        self.parts.append(keep)
        self.size += len(keep)
        if self.size > self.cap:
            merged = np.concatenate(self.parts)
            self.stride *= 2
            self.parts, self.size = [merged[::2]], len(merged[::2])

    def result(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.empty((0, 2))


def explained_gaps(gap_runs: list[tuple[int, float]], unknown_starts: np.ndarray) -> int:
    """How many missing values unknown requests can explain, in real time.

    ``gap_runs``: (number of consecutive missing values, deadline) where the
    deadline is the end of the request that returned the next higher value;
    an unknown request can have produced one of them only if it started
    before that deadline. Eligible sets are nested (a later deadline admits
    every earlier request), so filling the earliest deadlines first is a
    maximum matching.
    """
    if not gap_runs or len(unknown_starts) == 0:
        return 0
    starts = np.sort(unknown_starts)
    matched = 0
    for count, deadline in sorted(gap_runs, key=lambda g: g[1]):
        eligible = int(np.searchsorted(starts, deadline, side="left"))
        take = min(count, eligible - matched)
        if take > 0:
            matched += take
    return matched


class CounterChecker:
    """The counter checks for one epoch, fed the records window by window in time order.

    Values are counted in an array indexed by value (2 bytes per possible
    value), which gives duplicates, gaps and out-of-range values at the end.
    """

    def __init__(self, before: int | None, after: int | None, counter_min, counter_max,
                 clock_skew_ms: float = 10.0) -> None:
        self.before, self.after = before, after
        self.lo = int(counter_min) if counter_min is not None else 0
        size = int(counter_max) - self.lo + 1 if counter_max is not None else 0
        self.seen = np.zeros(max(size, 0), dtype=np.uint16)
        self.n_ok = self.n_fail = self.n_unknown = 0
        self.n_hidden = 0  # unseen first attempts (a client's resend): unknown outcomes too
        self.n_counted = 0  # records whose attempts were counted
        self.global_order = OrderChecker(clock_skew_ms / 1000.0)
        self.worker_order: dict[str, OrderChecker] = {}
        self.worker_ids: dict[str, int] = {}
        self.last_by_user: dict[int, int] = {}
        self.order_violations = 0
        self.user_violations = 0
        self.order_points = Sample()
        self.order_examples: list[dict] = []
        self.unknown_starts: list[np.ndarray] = []
        # pass 2
        self.dup_points = Sample()
        self.unexpected_points = Sample()
        self.dup_hosts: dict[int, set] = {}
        self._gap_next: np.ndarray | None = None
        self._deadline: dict[int, float] = {}

    def add(self, chunk: Chunk, ok: np.ndarray, fail: np.ndarray,
            unknown: np.ndarray) -> None:
        self.n_ok += int(ok.sum())
        self.n_fail += int(fail.sum())
        self.n_unknown += int(unknown.sum())
        if unknown.any():
            self.unknown_starts.append(chunk.t_start[unknown])
        hidden = chunk.hidden
        self.n_counted += attempts_counted(chunk.df)
        if hidden.any():
            self.n_hidden += int(hidden.sum())
            self.n_unknown += int(hidden.sum())
            self.unknown_starts.append(np.repeat(chunk.t_start, hidden))
        if not ok.any() or len(self.seen) == 0:  # no counter value anywhere: nothing to order
            return
        rows = np.flatnonzero(ok)
        values = chunk.counter[rows]
        counts = np.bincount(values - self.lo, minlength=len(self.seen))
        self.seen += np.minimum(counts, 65535 - self.seen).astype(np.uint16)  # saturates
        t_start, t_end = chunk.t_start[rows], chunk.t_end[rows]

        flags = self.global_order.feed(t_start, t_end, values)
        # This run's id of each worker (its categorical codes differ from window to window).
        ids = np.array([self.worker_ids.setdefault(name, len(self.worker_ids))
                        for name in chunk.worker_names] or [0], dtype=np.int64)
        wid = ids[chunk.worker_codes[rows]]
        for worker in np.unique(wid).tolist():
            idx = np.flatnonzero(wid == worker)
            checker = self.worker_order.setdefault(worker, OrderChecker(0.0))
            flags[idx] |= checker.feed(t_start[idx], t_end[idx], values[idx])
        if flags.any():
            self.order_violations += int(flags.sum())
            self.order_points.add(np.column_stack([t_end[flags], values[flags]]))
            for i in rows[flags][:max(0, EXAMPLES - len(self.order_examples))].tolist():
                code = chunk.host_codes[i]
                self.order_examples.append({"t_start": float(chunk.t_start[i]),
                                            "value": int(chunk.counter[i]),
                                            "hostname": chunk.host_names[code]
                                            if code >= 0 else None})

        # One user's requests are sequential: values must increase (no clocks needed).
        key = wid * (1 << 32) + chunk.user[rows]
        order = np.lexsort((t_start, key))
        k, v = key[order], values[order]
        bad = int(((k[1:] == k[:-1]) & (v[1:] <= v[:-1])).sum())
        firsts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        lasts = np.r_[firsts[1:] - 1, len(k) - 1]
        for f, last in zip(firsts, lasts):
            prev = self.last_by_user.get(int(k[f]))
            if prev is not None and v[f] <= prev:
                bad += 1
            self.last_by_user[int(k[f])] = int(v[last])
        self.user_violations += bad

    def _high(self) -> int | None:
        return None if self.before is None else self.before + self.n_ok + self.n_unknown

    def _low(self) -> int:
        present = np.flatnonzero(self.seen)
        if self.before is not None:
            return self.before
        return int(present[0]) + self.lo - 1 if len(present) else self.lo

    def prepare(self) -> None:
        """Between the passes: the values that follow a gap (whose end time we need)."""
        if self.n_ok == 0 or len(self.seen) == 0:
            self._gap_next = np.empty(0, dtype=np.int64)
            return
        low = self._low()
        present = self.seen > 0
        idx = np.arange(len(self.seen)) + self.lo
        prev_missing = np.r_[True, ~present[:-1]]  # lo - 1 is never seen
        # v follows a gap if v is present, v-1 is missing, and v-1 is above the low bound
        follows = present & prev_missing & (idx - 1 > low)
        self._gap_next = idx[follows]

    def collect(self, chunk: Chunk, ok: np.ndarray) -> None:
        """Pass 2: where the duplicates and out-of-range values are; gaps' deadlines."""
        if not ok.any() or len(self.seen) == 0:
            return
        values = chunk.counter[ok]
        t_end = chunk.t_end[ok]
        dup = self.seen[values - self.lo] > 1
        if dup.any():
            self.dup_points.add(np.column_stack([t_end[dup], values[dup]]))
            codes = chunk.host_codes[ok][dup]
            for value, code in zip(values[dup].tolist(), codes.tolist()):
                if value in self.dup_hosts or len(self.dup_hosts) < EXAMPLES:
                    self.dup_hosts.setdefault(value, set()).add(
                        chunk.host_names[code] if code >= 0 else "None")
        if self.before is not None:
            out = (values <= self.before) | (values > self._high())
            if out.any():
                self.unexpected_points.add(np.column_stack([t_end[out], values[out]]))
        if self._gap_next is not None and len(self._gap_next):
            hit = np.isin(values, self._gap_next)
            for value, end in zip(values[hit].tolist(), t_end[hit].tolist()):
                # the latest end among requests that returned it: the most generous deadline
                self._deadline[value] = max(end, self._deadline.get(value, end))

    def result(self) -> dict:
        result: dict = {
            "ok": self.n_ok, "fail": self.n_fail, "unknown": self.n_unknown,
            "hidden_attempts": self.n_hidden, "attempts_counted": self.n_counted,
            "counter_before": self.before, "counter_after": self.after,
            "duplicates": 0, "unexpected": None, "gaps": 0, "unexplained_gaps": 0,
            "lost": None, "unexplained_increments": None, "final_below_returned": None,
            "max_returned": None,
            "order_violations": self.order_violations, "user_violations": self.user_violations,
            "examples": {}, "not_checked": [],
        }
        if self.before is None or self.after is None:
            result["not_checked"].append("reconciliation")
        else:
            result["lost"] = max(0, self.before + self.n_ok - self.after)
            result["unexplained_increments"] = max(
                0, self.after - (self.before + self.n_ok + self.n_unknown))
        if self.n_ok == 0 or not self.seen.any():  # no counter value came back
            result["not_checked"] = ["duplicates", "unexpected", "gaps", "final", "order",
                                     "user_order", *result["not_checked"]]
            return result
        seen = self.seen
        result["duplicates"] = int(np.maximum(seen.astype(np.int64) - 1, 0).sum())
        present = np.flatnonzero(seen) + self.lo
        top = int(present[-1])
        result["max_returned"] = top
        if self.after is not None:
            result["final_below_returned"] = max(0, top - self.after)
        else:
            result["not_checked"].append("final")
        if self.before is not None:
            high = self._high()
            below = seen[: max(0, min(len(seen), self.before - self.lo + 1))]
            above = seen[max(0, high - self.lo + 1):]
            result["unexpected"] = int(below.sum()) + int(above.sum())
        else:
            result["not_checked"].append("unexpected")
        low = self._low()
        in_range = int(((present > low) & (present <= top)).sum())
        result["gaps"] = int(max(top - low, 0) - in_range)
        result["unexplained_gaps"] = result["gaps"] - self._explained(low)
        if self.dup_hosts:
            result["examples"]["duplicates"] = [
                {"value": v, "hostnames": sorted(h)} for v, h in sorted(self.dup_hosts.items())
            ][:EXAMPLES]
        if self.order_examples:
            result["examples"]["order"] = self.order_examples
        return result

    def _explained(self, low: int) -> int:
        if self._gap_next is None or not len(self._gap_next):
            return 0
        present = self.seen > 0
        runs = []
        for value in self._gap_next.tolist():
            # the run of missing values just below ``value``, down to the low bound
            j = value - 1 - self.lo
            count = 0
            while j >= 0 and not present[j] and j + self.lo > low:
                count += 1
                j -= 1
            if j < 0:  # below the lowest value seen: the run reaches down to ``low``
                count += max(0, self.lo - 1 - low)
            runs.append((count, self._deadline.get(value, np.inf)))
        starts = np.concatenate(self.unknown_starts) if self.unknown_starts else np.empty(0)
        examples = [{"missing_below": v, "count": c} for v, (c, _) in
                    zip(self._gap_next.tolist(), runs)][:EXAMPLES]
        self.gap_examples = examples
        return explained_gaps(runs, starts)

    def anomaly_points(self) -> dict[str, np.ndarray]:
        """(t_end, value) pairs per anomaly kind, sampled, for the counter figure."""
        return {"duplicate": self.dup_points.result(), "order": self.order_points.result(),
                "unexpected": self.unexpected_points.result()}


class EpochedCounter(Accumulator):
    """The counter checks across resets of the store (a restart without persistence).

    Records are routed to an epoch by when they started; each epoch has its own
    before/after (the run's, or the counter read around the reset). A request in flight
    across a reset may have incremented either instance: its value belongs to neither
    history for sure, so it is an unknown outcome in both (it can explain a gap on
    either side, and never counts as a duplicate or an order violation).
    """

    def __init__(self, before: int | None, after: int | None, resets: list[dict],
                 counter_min, counter_max, clock_skew_ms: float = 10.0) -> None:
        self.resets = sorted(resets, key=lambda r: r["t"])
        self.bounds = [r["t"] for r in self.resets]
        befores = [before] + [r.get("counter_after") for r in self.resets]
        afters = [r.get("counter_before") for r in self.resets] + [after]
        self.epochs = [CounterChecker(b, a, counter_min, counter_max, clock_skew_ms)
                       for b, a in zip(befores, afters)]
        self.straddling = 0  # requests in flight across a reset
        self._counted_twice = 0  # of those, the unknowns also counted in a later epoch

    second_pass = True  # where the duplicates are; the gaps' deadlines

    def _split(self, chunk: Chunk):
        """(epoch, rows, straddling, came in): each epoch's rows (those that started in
        it, and those in flight when it began), which of them straddle one of its edges,
        and which were already counted in an earlier epoch."""
        starts, ends = chunk.t_start, chunk.t_end
        edges = [-np.inf, *self.bounds, np.inf]
        for i, epoch in enumerate(self.epochs):
            lo, hi = edges[i], edges[i + 1]
            own = (starts >= lo) & (starts < hi)
            came_in = (starts < lo) & (ends >= lo)
            rows = own | came_in
            if rows.any():
                yield epoch, rows, (came_in | (own & (ends >= hi)))[rows], came_in[rows]

    def add(self, chunk: Chunk) -> None:
        ok, fail, unknown = chunk.ok, chunk.fail, chunk.unknown
        if not self.bounds:  # one history: no copy
            self.epochs[0].add(chunk, ok, fail, unknown)
            return
        for epoch, rows, either, came_in in self._split(chunk):
            ok_r, unknown_r = ok[rows], unknown[rows]
            self.straddling += int((either & ~came_in).sum())
            self._counted_twice += int((came_in & (ok_r | unknown_r)).sum())
            epoch.add(chunk.subset(rows), ok_r & ~either, fail[rows] & ~came_in,
                      unknown_r | (ok_r & either))

    def plan(self) -> None:
        for epoch in self.epochs:
            epoch.prepare()

    def collect(self, chunk: Chunk) -> None:
        if not self.bounds:
            self.epochs[0].collect(chunk, chunk.ok)
            return
        for epoch, rows, either, _ in self._split(chunk):
            epoch.collect(chunk.subset(rows), chunk.ok[rows] & ~either)

    def result(self) -> dict:
        parts = [e.result() for e in self.epochs]
        if len(parts) == 1:
            out = parts[0]
            out["resets"] = []
            return out
        out = {"counter_before": parts[0]["counter_before"],
               "counter_after": parts[-1]["counter_after"], "examples": {},
               "not_checked": sorted({n for p in parts for n in p["not_checked"]})}
        for key in ("ok", "fail", "unknown", "duplicates", "gaps", "unexplained_gaps",
                    "order_violations", "user_violations", "hidden_attempts",
                    "attempts_counted"):
            out[key] = sum(p[key] for p in parts)
        out["unknown"] -= self._counted_twice  # each request once in the totals
        out["straddling_reset"] = self.straddling
        for key in ("unexpected", "lost", "unexplained_increments", "final_below_returned"):
            values = [p[key] for p in parts]
            out[key] = None if any(v is None for v in values) else sum(values)
        out["max_returned"] = parts[-1]["max_returned"]
        for p in parts:
            for kind, examples in p["examples"].items():
                out["examples"].setdefault(kind, []).extend(examples)
        out["resets"] = [{"t": r["t"], "counter_before": r.get("counter_before"),
                          "counter_after": r.get("counter_after"), "fault": r.get("fault")}
                         for r in self.resets]
        out["epochs"] = [{k: p[k] for k in ("ok", "unknown", "counter_before", "counter_after",
                                             "duplicates", "lost", "unexplained_gaps")}
                         for p in parts]
        return out

    def anomaly_points(self) -> dict[str, np.ndarray]:
        merged: dict[str, list] = {}
        for epoch in self.epochs:
            for kind, points in epoch.anomaly_points().items():
                merged.setdefault(kind, []).append(points)
        return {k: np.concatenate(v) if v else np.empty((0, 2)) for k, v in merged.items()}


def store_resets(events: list[dict]) -> list[dict]:
    """Restarts of the store that lost the counter (from the fault events)."""
    out = []
    applied: dict[int, float] = {}
    for event in sorted(events or [], key=lambda e: e["t"]):
        if event.get("kind") != "restart-redis":
            continue
        if event["event"] == "fault_applied":
            applied[event.get("fault", -1)] = event["t"]
        elif event["event"] == "fault_ended":
            before, after = event.get("counter_before"), event.get("counter_after")
            if before is not None and after is not None and after < before:
                # the split: when writes were paused before the restart (else its start)
                out.append({"t": event.get("paused_at") or applied.get(event.get("fault", -1),
                                                                        event["t"]),
                            "counter_before": before, "counter_after": after,
                            "fault": event.get("fault")})
    return out


def _s(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
