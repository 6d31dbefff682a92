"""Exact latency percentiles in bounded memory, in two passes over the records.

The first pass fills a fine log-spaced histogram; it locates, for each
percentile, the bin of the order statistics it needs. The second pass keeps
only the values that fall in those bins, so memory is the histogram plus a
few bins' worth of values. Percentiles interpolate linearly between order
statistics, as numpy's default does.
"""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 95, 99)
# Log-spaced latency bins from 1 µs to ~3 hours; values outside fall in the end bins.
EDGES = np.logspace(-3, 7, 4001)


def bin_index(latency: np.ndarray) -> np.ndarray:
    """The fine bin of each latency: arithmetic on the log (4x faster than a search among
    4,001 edges); both passes use this one function, so the bins agree between them."""
    return log_bins(latency, -3.0, 400.0, len(EDGES))


def log_bins(values: np.ndarray, low_exp: float, per_decade: float, count: int) -> np.ndarray:
    """Bin k holds [10**(low_exp + (k-1)/per_decade), 10**(low_exp + k/per_decade)); 0 and
    ``count`` catch what lies below and above."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.floor((np.log10(values) - low_exp) * per_decade) + 1
    return np.clip(np.nan_to_num(k, nan=0.0, posinf=count, neginf=0.0), 0, count) \
        .astype(np.int64)


class Quantiles:
    """One population of latencies (ms), fed in two passes."""

    def __init__(self, percentiles: tuple[int, ...] = PERCENTILES) -> None:
        self.percentiles = percentiles
        self.n = 0
        self.hist = np.zeros(len(EDGES) + 1, dtype=np.int64)
        self.max = -np.inf
        self.sum = 0.0
        self._wanted: set[int] = set()
        self._found: dict[int, list[np.ndarray]] = {}
        self._cum: np.ndarray | None = None

    def add(self, latency: np.ndarray, bins: np.ndarray | None = None) -> None:
        """``bins``: ``bin_index(latency)``, when the caller has it already."""
        if len(latency) == 0:
            return
        self.n += len(latency)
        self.hist += np.bincount(bin_index(latency) if bins is None else bins,
                                 minlength=len(self.hist))
        self.max = max(self.max, float(latency.max()))
        self.sum += float(latency.sum())

    def plan(self) -> None:
        """Between the passes: which bins hold the order statistics we need."""
        self._cum = np.cumsum(self.hist)
        for p in self.percentiles:
            pos = (self.n - 1) * p / 100
            for rank in {int(np.floor(pos)), int(np.ceil(pos))}:
                self._wanted.add(int(np.searchsorted(self._cum, rank, side="right")))

    def collect(self, latency: np.ndarray, bins: np.ndarray | None = None) -> None:
        if not self._wanted or len(latency) == 0:
            return
        bins = bin_index(latency) if bins is None else bins
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
        if not self.n:
            return {f"p{p}": None for p in self.percentiles} | {"max": None, "mean": None}
        out = {}
        for p in self.percentiles:
            pos = (self.n - 1) * p / 100
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            v_lo, v_hi = self._order_stat(lo), self._order_stat(hi)
            out[f"p{p}"] = v_lo + (v_hi - v_lo) * (pos - lo)
        out["max"] = self.max
        out["mean"] = self.sum / self.n
        return out


# A coarse histogram for per-second percentiles over the whole run (the timeline):
# 0.01 ms .. 100 s in 120 bins, ~14 % wide. Exact enough to see a latency step.
COARSE = np.logspace(-2, 5, 121)


def coarse_quantile(hist: np.ndarray, q: float) -> float | None:
    """The upper edge of the bin holding quantile ``q`` of a COARSE histogram."""
    total = hist.sum()
    if total == 0:
        return None
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    k = min(k, len(COARSE) - 1)
    return float(COARSE[k]) if k > 0 else float(COARSE[0])
