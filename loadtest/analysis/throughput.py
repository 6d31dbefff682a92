"""Throughput, latency and errors: per stage, around each scale change, and over time.

Computed as the records stream by, in bounded memory. Latency percentiles are
exact (numpy's linear interpolation between order statistics), found in two
passes: a fine histogram locates the bin of each needed order statistic, then
only the values of those bins are kept and sorted.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from loadtest.analysis.consistency import _matches
from loadtest.analysis.windows import Window

PERCENTILES = (50, 90, 95, 99)
# Log-spaced latency bins from 1 µs to ~3 hours; values outside fall in the end bins.
_EDGES = np.logspace(-3, 7, 4001)


def bin_index(latency: np.ndarray) -> np.ndarray:
    return np.searchsorted(_EDGES, latency, side="right")


def error_mask(df: pd.DataFrame) -> np.ndarray:
    status = df["status"].to_numpy()
    return (status == 0) | (status >= 400)


def error_kinds(df: pd.DataFrame) -> Counter:
    """Errors by kind: http_<status>, timeout, connection."""
    mask = error_mask(df)
    if not mask.any():
        return Counter()
    errs = df.loc[mask, ["status", "error"]]
    timeout = _matches(errs["error"], r"(?i)timeout|timed out")
    status = errs["status"].to_numpy()
    kinds = np.where(status > 0, np.char.add("http_", status.astype(str)),
                     np.where(timeout, "timeout", "connection"))
    values, counts = np.unique(kinds, return_counts=True)
    return Counter({str(v): int(c) for v, c in zip(values, counts)})


class WindowStats:
    """Accumulates one time window (a stage's steady part, or a transition)."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.requests = 0
        self.errors = 0
        self.kinds: Counter = Counter()
        self.hist = np.zeros(len(_EDGES) + 1, dtype=np.int64)
        self.max = -np.inf
        self.sum = 0.0
        self._wanted: dict[int, list[int]] = {}  # bin -> ranks (pass 2)
        self._found: dict[int, list[np.ndarray]] = {}

    def add(self, df: pd.DataFrame) -> None:
        if len(df) == 0:
            return
        latency = df["latency_ms"].to_numpy()
        self.requests += len(df)
        mask = error_mask(df)
        if mask.any():
            self.errors += int(mask.sum())
            self.kinds.update(error_kinds(df))
        self.hist += np.bincount(bin_index(latency), minlength=len(self.hist))
        self.max = max(self.max, float(latency.max()))
        self.sum += float(latency.sum())

    # pass 2: the order statistics the percentiles need
    def plan(self) -> None:
        self._cum = np.cumsum(self.hist)
        for p in PERCENTILES:
            pos = (self.requests - 1) * p / 100
            for rank in {int(np.floor(pos)), int(np.ceil(pos))}:
                b = int(np.searchsorted(self._cum, rank, side="right"))
                self._wanted.setdefault(b, []).append(rank)

    def collect(self, latency: np.ndarray) -> None:
        if not self._wanted or len(latency) == 0:
            return
        bins = bin_index(latency)
        for b in self._wanted:
            hit = latency[bins == b]
            if len(hit):
                self._found.setdefault(b, []).append(hit)

    def _order_stat(self, rank: int) -> float:
        b = int(np.searchsorted(self._cum, rank, side="right"))
        before = int(self._cum[b - 1]) if b > 0 else 0
        values = np.sort(np.concatenate(self._found.get(b, [np.empty(0)])))
        return float(values[rank - before])

    def result(self) -> dict:
        n = self.requests
        if n:
            lat = {}
            for p in PERCENTILES:
                pos = (n - 1) * p / 100
                lo, hi = int(np.floor(pos)), int(np.ceil(pos))
                v_lo, v_hi = self._order_stat(lo), self._order_stat(hi)
                lat[f"p{p}"] = v_lo + (v_hi - v_lo) * (pos - lo)
            lat["max"] = self.max
            lat["mean"] = self.sum / n
        else:
            lat = {f"p{p}": None for p in PERCENTILES} | {"max": None, "mean": None}
        return {
            "requests": n,
            "seconds": round(self.window.seconds, 3),
            "rps": n / self.window.seconds,
            "error_rate": self.errors / n if n else 0.0,
            "errors": self.errors,
            "errors_by_kind": dict(self.kinds),
            "latency_ms": lat,
        }


def scaling_efficiency(stages: list[dict]) -> None:
    """rps(level) / (level / first_level × rps(first)), in place; None without a base."""
    base = next((s for s in stages if s["level"] and s["rps"]), None)
    for stage in stages:
        if base is None or not stage["level"]:
            stage["scaling_efficiency"] = None
        else:
            ideal = stage["level"] / base["level"] * base["rps"]
            stage["scaling_efficiency"] = stage["rps"] / ideal if ideal else None


class Timeline:
    """Completed requests per 1 s bucket: total, errors, and per hostname."""

    def __init__(self, t0: float, t_max: float) -> None:
        self.t0 = t0
        self.n = int(np.floor(t_max - t0)) + 1
        self.total = np.zeros(self.n, dtype=np.int64)
        self.errors = np.zeros(self.n, dtype=np.int64)
        self.per_host: dict[str, np.ndarray] = {}

    def add(self, df: pd.DataFrame) -> None:
        bucket = np.clip(np.floor(df["t_end"].to_numpy() - self.t0).astype(np.int64), 0,
                         self.n - 1)
        self.total += np.bincount(bucket, minlength=self.n)
        self.errors += np.bincount(bucket[error_mask(df)], minlength=self.n)
        hosts = df["hostname"]
        codes = hosts.cat.codes.to_numpy().astype(np.int64)
        for code, name in enumerate(hosts.cat.categories):
            mine = bucket[codes == code]
            if len(mine):
                row = self.per_host.setdefault(str(name), np.zeros(self.n, dtype=np.int64))
                row += np.bincount(mine, minlength=self.n)

    def result(self, top: int = 12) -> dict:
        from loadtest.analysis.distribution import _natural

        largest = sorted(self.per_host, key=lambda h: -int(self.per_host[h].sum()))[:top]
        largest.sort(key=_natural)
        return {"t0": self.t0, "seconds": self.n, "total": self.total.tolist(),
                "errors": self.errors.tolist(),
                "per_hostname": {h: self.per_host[h].tolist() for h in largest}}
