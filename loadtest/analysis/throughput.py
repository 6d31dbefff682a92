"""Throughput, latency and errors: per time window, per replica, and over time.

Computed as the records stream by, in bounded memory, from ``Chunk``s (a
window of records with the arrays every accumulator needs, computed once).
Latency percentiles are exact (see ``latency``). In the open model the
latency is also measured from each request's intended start, which counts
the time an arrival waited for a free user (coordinated-omission free).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from loadtest.analysis.latency import COARSE, Quantiles, coarse_quantile, log_bins
from loadtest.analysis.outcomes import matches
from loadtest.analysis.passes import Accumulator, Chunk
from loadtest.analysis.windows import Window, natural


def error_kinds(df: pd.DataFrame, mask: np.ndarray) -> Counter:
    """Errors by kind: http_<status>, timeout, connection."""
    if not mask.any():
        return Counter()
    errs = df.loc[mask, ["status", "error"]]
    timeout = matches(errs["error"], r"(?i)timeout|timed out")
    status = errs["status"].to_numpy()
    kinds = np.where(status > 0, np.char.add("http_", status.astype(str)),
                     np.where(timeout, "timeout", "connection"))
    values, counts = np.unique(kinds, return_counts=True)
    return Counter({str(v): int(c) for v, c in zip(values, counts)})


class HostStats:
    """One replica inside a window: requests, errors (and those cut), busy time, p50/p99."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.cut = 0
        self.busy_ms = 0.0
        self.latency = Quantiles((50, 99))

    def result(self) -> dict:
        lat = self.latency.result()
        return {"requests": self.requests, "errors": self.errors, "cut": self.cut,
                "busy_s": round(self.busy_ms / 1000, 4),
                "p50_ms": lat["p50"], "p99_ms": lat["p99"]}


class Slice(Accumulator):
    """Accumulates requests that started in one or more time windows: totals, latency,
    errors, and each replica. (Several windows: e.g. every segment with 3 replicas.)"""

    second_pass = True  # exact percentiles

    def __init__(self, window: Window | list[Window]) -> None:
        self.windows = window if isinstance(window, list) else [window]
        self.window = self.windows[0]
        self.seconds = sum(w.seconds for w in self.windows)
        self.requests = 0
        self.errors = 0
        self.unknown = 0
        # Requests the users felt: no answer, a 5xx (the balancer's 502/503/504 among them),
        # an unknown outcome, the balancer's own 4xx. Never the app's own 4xx (a 409, a
        # 404): that is the app answering, whatever the stack did; counted apart.
        self.cut = 0
        self.app_4xx = 0
        self.cut_kinds: Counter = Counter()
        self.cut_first: float | None = None  # t_start of the first and last of them
        self.cut_last: float | None = None
        self.unnamed_errors = 0       # errors no replica answered: the balancer's own
        self.unnamed_cut = 0          # ... those cut
        self.kinds: Counter = Counter()
        self.latency = Quantiles()
        self.from_intended = Quantiles()
        self.hosts: dict[str, HostStats] = {}

    def add(self, chunk: Chunk) -> None:
        for window in self.windows:
            self._add(chunk, *chunk.span(window.start, window.end))

    def _add(self, chunk: Chunk, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        sl = slice(lo, hi)
        latency, bins = chunk.latency[sl], chunk.bins[sl]
        err = chunk.err[sl]
        self.requests += hi - lo
        n_err = int(err.sum())
        codes = chunk.host_codes[sl]
        if n_err:
            self.errors += n_err
            self.kinds.update(error_kinds(chunk.df.iloc[sl], err))
            self.unnamed_errors += int((err & (codes < 0)).sum())
        self.unknown += int(chunk.unknown[sl].sum())
        status = chunk.status[sl]
        app_4xx = (status >= 400) & (status < 500) & ~chunk.unreached[sl]
        cut = (err | chunk.unknown[sl]) & ~app_4xx
        self.app_4xx += int(app_4xx.sum())
        if cut.any():
            self.cut += int(cut.sum())
            self.unnamed_cut += int((cut & (codes < 0)).sum())
            self.cut_kinds.update(error_kinds(chunk.df.iloc[sl], cut & err))
            starts = chunk.t_start[sl][cut]
            first, last = float(starts[0]), float(starts[-1])  # rows are in t_start order
            self.cut_first = first if self.cut_first is None else min(self.cut_first, first)
            self.cut_last = last if self.cut_last is None else max(self.cut_last, last)
        self.latency.add(latency, bins)
        self.from_intended.add(_from_intended(chunk, sl))
        for code in _codes(codes, len(chunk.host_names)):
            mine = codes == code
            host = self.hosts.setdefault(chunk.host_names[code], HostStats())
            host.requests += int(mine.sum())
            host.errors += int(err[mine].sum())
            host.cut += int(cut[mine].sum())
            host.busy_ms += float(latency[mine].sum())
            host.latency.add(latency[mine], bins[mine])

    def plan(self) -> None:
        self.latency.plan()
        self.from_intended.plan()
        for host in self.hosts.values():
            host.latency.plan()

    def collect(self, chunk: Chunk) -> None:
        for window in self.windows:
            self._collect(chunk, *chunk.span(window.start, window.end))

    def _collect(self, chunk: Chunk, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        sl = slice(lo, hi)
        latency, bins = chunk.latency[sl], chunk.bins[sl]
        self.latency.collect(latency, bins)
        self.from_intended.collect(_from_intended(chunk, sl))
        codes = chunk.host_codes[sl]
        for code in _codes(codes, len(chunk.host_names)):
            if chunk.host_names[code] in self.hosts:
                mine = codes == code
                self.hosts[chunk.host_names[code]].latency.collect(latency[mine], bins[mine])

    def result(self) -> dict:
        n = self.requests
        out = {
            "requests": n,
            "seconds": round(self.seconds, 3),
            "rps": n / self.seconds,
            "error_rate": self.errors / n if n else 0.0,
            "errors": self.errors,
            "unknown": self.unknown,
            "unknown_rate": self.unknown / n if n else 0.0,
            "errors_by_kind": dict(self.kinds),
            "cut": self.cut,
            "cut_by_kind": dict(self.cut_kinds),
            "app_4xx": self.app_4xx,
            "cut_first_t": self.cut_first,
            "cut_last_t": self.cut_last,
            "unnamed_errors": self.unnamed_errors,
            "unnamed_cut": self.unnamed_cut,
            "latency_ms": self.latency.result(),
            "per_replica": {h: self.hosts[h].result() for h in sorted(self.hosts, key=natural)},
        }
        if self.from_intended.n:
            out["latency_from_intended_ms"] = self.from_intended.result()
        return out


def _codes(codes: np.ndarray, names: int) -> list[int]:
    """The replica codes present (a count, not a sort: np.unique sorts a million rows)."""
    if len(codes) == 0 or names == 0:
        return []
    present = np.bincount(codes[codes >= 0], minlength=names)
    return np.flatnonzero(present).tolist()


def _from_intended(chunk: Chunk, sl: slice) -> np.ndarray:
    """Latency (ms) from each open-model request's intended start; empty otherwise."""
    intended = chunk.intended[sl]
    has = ~np.isnan(intended)
    return (chunk.t_end[sl][has] - intended[has]) * 1000.0


def scaling_efficiency(rows: list[dict]) -> None:
    """rps(level) / (level / first_level × rps(first)), in place; None without a base."""
    base = next((s for s in rows if s["level"] and s["rps"]), None)
    for row in rows:
        if base is None or not row["level"]:
            row["scaling_efficiency"] = None
        else:
            ideal = row["level"] / base["level"] * base["rps"]
            row["scaling_efficiency"] = row["rps"] / ideal if ideal else None


class Timeline(Accumulator):
    """Per 1 s bucket (by completion time): requests, errors, unknown outcomes, requests
    per hostname, a coarse latency histogram (for p95 over time), and arrivals that
    were due (open model, by intended start)."""

    def __init__(self, t0: float, t_max: float) -> None:
        self.t0 = t0
        self.n = int(np.floor(t_max - t0)) + 1
        self.total = np.zeros(self.n, dtype=np.int64)
        self.errors = np.zeros(self.n, dtype=np.int64)
        self.unknown = np.zeros(self.n, dtype=np.int64)
        self.intended = np.zeros(self.n, dtype=np.int64)
        self.hist = np.zeros((self.n, len(COARSE) + 1), dtype=np.int32)
        self.per_host: dict[str, np.ndarray] = {}

    def _bucket(self, t: np.ndarray) -> np.ndarray:
        return np.clip(np.floor(t - self.t0).astype(np.int64), 0, self.n - 1)

    def add(self, chunk: Chunk) -> None:
        bucket = self._bucket(chunk.t_end)
        self.total += np.bincount(bucket, minlength=self.n)
        self.errors += np.bincount(bucket[chunk.err], minlength=self.n)
        self.unknown += np.bincount(bucket[chunk.unknown], minlength=self.n)
        width = self.hist.shape[1]
        flat = bucket * width + log_bins(chunk.latency, -2.0, 120 / 7, len(COARSE))
        self.hist += np.bincount(flat, minlength=self.n * width).reshape(self.n, width) \
            .astype(np.int32)
        has = ~np.isnan(chunk.intended)
        if has.any():
            self.intended += np.bincount(self._bucket(chunk.intended[has]), minlength=self.n)
        for code, name in enumerate(chunk.host_names):
            mine = bucket[chunk.host_codes == code]
            if len(mine):
                row = self.per_host.setdefault(name, np.zeros(self.n, dtype=np.int64))
                row += np.bincount(mine, minlength=self.n)

    def p95(self) -> list[float | None]:
        return [coarse_quantile(self.hist[i], 0.95) for i in range(self.n)]

    def result(self, top: int = 12) -> dict:
        largest = sorted(self.per_host, key=lambda h: -int(self.per_host[h].sum()))[:top]
        largest.sort(key=natural)
        out = {"t0": self.t0, "seconds": self.n, "total": self.total.tolist(),
               "errors": self.errors.tolist(), "unknown": self.unknown.tolist(),
               "p95_ms": self.p95(),
               "per_hostname": {h: self.per_host[h].tolist() for h in largest}}
        if self.intended.any():
            out["intended"] = self.intended.tolist()
        return out
