"""Did the shared counter stay consistent? A Jepsen-style checker over the records.

Every request is classified as Jepsen does an operation:

- ok: a counter value came back;
- fail: it surely never reached the app (connection refused, or the balancer's
  own "no server available" answer, which carries no replica name);
- unknown: anything else without a value (timeouts, resets, 502/504, a Redis
  error inside the app): it may or may not have incremented.

The checks are pure functions of the table and the counter read before and
after the run; each returns numbers plus a few examples as evidence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXAMPLES = 20
NO_SERVER_STATUSES = (503,)


def classify(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (ok, fail, unknown), one entry per record."""
    ok = df["counter"].notna().to_numpy()
    status = df["status"].to_numpy()
    refused = (status == 0) & _matches(df["error"], r"ConnectionRefused|Connection refused")
    no_server = np.isin(status, NO_SERVER_STATUSES) & df["hostname"].isna().to_numpy()
    fail = ~ok & (refused | no_server)
    return ok, fail, ~ok & ~fail


def _matches(series: pd.Series, pattern: str) -> np.ndarray:
    """Regex match on a (categorical) string column, evaluated once per distinct value."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = series.cat.categories
        if len(cats) == 0:
            return np.zeros(len(series), dtype=bool)
        hit = np.asarray(pd.Series(cats.astype(str)).str.contains(pattern, regex=True))
        codes = series.cat.codes.to_numpy()
        return np.where(codes >= 0, hit[np.clip(codes, 0, None)], False)
    return series.astype("string").str.contains(pattern, regex=True).fillna(False).to_numpy()


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


class CounterChecker:
    """The counter checks, fed the records window by window in time order.

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
        self.global_order = OrderChecker(clock_skew_ms / 1000.0)
        self.worker_order: dict[str, OrderChecker] = {}
        self.worker_ids: dict[str, int] = {}
        self.last_by_user: dict[int, int] = {}
        self.order_violations = 0
        self.user_violations = 0
        self.order_points = Sample()
        self.order_examples: list[dict] = []
        # pass 2
        self.dup_points = Sample()
        self.unexpected_points = Sample()
        self.dup_hosts: dict[int, set] = {}

    def add(self, df: pd.DataFrame) -> None:
        ok, fail, unknown = classify(df)
        self.n_ok += int(ok.sum())
        self.n_fail += int(fail.sum())
        self.n_unknown += int(unknown.sum())
        if not ok.any():
            return
        okdf = df.loc[ok]
        values = okdf["counter"].to_numpy(dtype=np.int64)
        np.add.at(self.seen, values - self.lo, 1)
        t_start, t_end = okdf["t_start"].to_numpy(), okdf["t_end"].to_numpy()

        flags = self.global_order.feed(t_start, t_end, values)
        workers = okdf["worker"].astype(str).to_numpy()
        for name in np.unique(workers):
            idx = np.flatnonzero(workers == name)
            checker = self.worker_order.setdefault(name, OrderChecker(0.0))
            flags[idx] |= checker.feed(t_start[idx], t_end[idx], values[idx])
        if flags.any():
            self.order_violations += int(flags.sum())
            self.order_points.add(np.column_stack([t_end[flags], values[flags]]))
            if len(self.order_examples) < EXAMPLES:
                for row in okdf[flags].head(EXAMPLES - len(self.order_examples)).itertuples():
                    self.order_examples.append({"t_start": float(row.t_start),
                                                "value": int(row.counter),
                                                "hostname": _s(row.hostname)})

        # One user's requests are sequential: values must increase (no clocks needed).
        wid = np.array([self.worker_ids.setdefault(w, len(self.worker_ids)) for w in workers])
        key = wid.astype(np.int64) * (1 << 32) + okdf["user"].to_numpy(dtype=np.int64)
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

    def collect(self, df: pd.DataFrame) -> None:
        """Pass 2: where the duplicates and out-of-range values are, for the report."""
        ok = df["counter"].notna().to_numpy()
        if not ok.any() or len(self.seen) == 0:
            return
        values = df["counter"].to_numpy()[ok].astype(np.int64)
        t_end = df["t_end"].to_numpy()[ok]
        dup = self.seen[values - self.lo] > 1
        if dup.any():
            self.dup_points.add(np.column_stack([t_end[dup], values[dup]]))
            hosts = df["hostname"].astype(object).to_numpy()[ok][dup]
            for value, host in zip(values[dup], hosts):
                if int(value) in self.dup_hosts or len(self.dup_hosts) < EXAMPLES:
                    self.dup_hosts.setdefault(int(value), set()).add(str(host))
        if self.before is not None:
            out = (values <= self.before) | (values > self._high())
            if out.any():
                self.unexpected_points.add(np.column_stack([t_end[out], values[out]]))

    def result(self) -> dict:
        result: dict = {
            "ok": self.n_ok, "fail": self.n_fail, "unknown": self.n_unknown,
            "counter_before": self.before, "counter_after": self.after,
            "duplicates": 0, "unexpected": None, "gaps": 0, "unexplained_gaps": 0,
            "lost": None, "unexplained_increments": None,
            "order_violations": self.order_violations, "user_violations": self.user_violations,
            "examples": {}, "not_checked": [],
        }
        if self.before is None or self.after is None:
            result["not_checked"].append("reconciliation")
        else:
            result["lost"] = max(0, self.before + self.n_ok - self.after)
            result["unexplained_increments"] = max(
                0, self.after - (self.before + self.n_ok + self.n_unknown))
        if self.n_ok == 0:
            result["not_checked"] = ["duplicates", "gaps", "order", "user_order",
                                     *result["not_checked"]]
            return result
        seen = self.seen
        result["duplicates"] = int(np.maximum(seen.astype(np.int64) - 1, 0).sum())
        present = np.flatnonzero(seen) + self.lo
        top = int(present[-1])
        if self.before is not None:
            high = self._high()
            below = seen[: max(0, min(len(seen), self.before - self.lo + 1))]
            above = seen[max(0, high - self.lo + 1):]
            result["unexpected"] = int(below.sum()) + int(above.sum())
            low = self.before
        else:
            result["not_checked"].append("unexpected")
            low = int(present[0]) - 1
        in_range = int(((present > low) & (present <= top)).sum())
        result["gaps"] = int(max(top - low, 0) - in_range)
        result["unexplained_gaps"] = max(0, result["gaps"] - self.n_unknown)
        if self.dup_hosts:
            result["examples"]["duplicates"] = [
                {"value": v, "hostnames": sorted(h)} for v, h in sorted(self.dup_hosts.items())
            ][:EXAMPLES]
        if self.order_examples:
            result["examples"]["order"] = self.order_examples
        return result

    def anomaly_points(self) -> dict[str, np.ndarray]:
        """(t_end, value) pairs per anomaly kind, sampled, for the counter figure."""
        return {"duplicate": self.dup_points.result(), "order": self.order_points.result(),
                "unexpected": self.unexpected_points.result()}


def _s(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
