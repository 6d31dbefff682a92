"""Per-second figures of a set of time windows: requests, p50 and p99 per 1 s bucket.

What a comparison with a baseline needs to tell a change from noise: not one
number per replica count, but how it varied second by second (``compare``
bootstraps over these buckets).

Buckets are whole seconds of each window, counted from the window's start, by
the request's ``t_start`` (as ``Slice`` counts requests); the last part of a
window shorter than a second is left out, since its count is not a rate.
Percentiles are exact: a chunk's records are in ``t_start`` order, so a bucket
is complete once a later record has been seen; only the last bucket of each
window is carried over to the next chunk (bounded memory, one pass).
"""

from __future__ import annotations

import math

import numpy as np

from loadtest.analysis.passes import Accumulator, Chunk
from loadtest.analysis.windows import Window

QUANTILES = (0.50, 0.99)


def bucket_quantiles(bucket: np.ndarray, latency: np.ndarray,
                     qs: tuple[float, ...] = QUANTILES) -> tuple[np.ndarray, np.ndarray,
                                                                  list[np.ndarray]]:
    """Exact quantiles of ``latency`` grouped by ``bucket`` (linear interpolation between
    order statistics, as numpy's default). Returns (bucket ids, counts, [values per q])."""
    if len(bucket) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), [np.empty(0) for _ in qs]
    # One float key (bucket, then latency within it) sorts twice as fast as a lexsort;
    # latencies closer than 1e-12 of the largest may swap, which moves no quantile.
    order = np.argsort(bucket + latency / (float(latency.max()) * (1 + 1e-9) + 1e-12))
    b, lat = bucket[order], latency[order]
    ids, starts, counts = np.unique(b, return_index=True, return_counts=True)
    out = []
    for q in qs:
        pos = (counts - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        v_lo, v_hi = lat[starts + lo], lat[starts + hi]
        out.append(v_lo + (v_hi - v_lo) * (pos - lo))
    return ids, counts, out


class _WindowSeconds:
    """The buckets of one window."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.full = int(math.floor(window.end - window.start + 1e-9))  # whole seconds
        self.done: dict[int, tuple[int, float, float]] = {}  # bucket -> (n, p50, p99)
        self.pending_id: int | None = None
        self.pending = np.empty(0)

    def add(self, t_start: np.ndarray, latency: np.ndarray) -> None:
        if self.full <= 0 or len(t_start) == 0:
            return
        ids = np.floor(t_start - self.window.start).astype(np.int64)
        keep = ids < self.full  # the tail shorter than a second is not a rate
        ids, latency = ids[keep], latency[keep]
        if self.pending_id is not None:
            ids = np.concatenate([np.full(len(self.pending), self.pending_id), ids])
            latency = np.concatenate([self.pending, latency])
        if len(ids) == 0:
            return
        last = int(ids[-1])  # t_start order: only the last bucket may go on
        more = ids == last
        self.pending_id, self.pending = last, latency[more]
        self._close(ids[~more], latency[~more])

    def _close(self, ids: np.ndarray, latency: np.ndarray) -> None:
        got, counts, (p50, p99) = bucket_quantiles(ids, latency)
        for i, n, a, b in zip(got.tolist(), counts.tolist(), p50.tolist(), p99.tolist()):
            self.done[i] = (n, a, b)

    def finish(self) -> None:
        if self.pending_id is not None:
            self._close(np.full(len(self.pending), self.pending_id), self.pending)
            self.pending_id, self.pending = None, np.empty(0)


class PerSecond(Accumulator):
    """Accumulates 1 s buckets over one or more windows (e.g. every steady segment with 3
    replicas), fed the same ``Chunk``s as ``Slice.add``. ``t0``: the time the result's
    ``t`` counts from (the run's first request)."""

    def __init__(self, window: Window | list[Window], t0: float = 0.0) -> None:
        windows = window if isinstance(window, list) else [window]
        self.t0 = t0
        self.parts = [_WindowSeconds(w) for w in windows]

    def add(self, chunk: Chunk) -> None:
        for part in self.parts:
            lo, hi = chunk.span(part.window.start, part.window.end)
            if hi > lo:
                part.add(chunk.t_start[lo:hi], chunk.latency[lo:hi])

    def result(self) -> dict:
        """``{"t": [...], "requests": [...], "p50_ms": [...], "p99_ms": [...]}`` in time
        order; a whole second without a request counts 0 with no percentiles (None)."""
        rows = []
        for part in self.parts:
            part.finish()
            for k in range(part.full):
                n, p50, p99 = part.done.get(k, (0, None, None))
                rows.append((part.window.start + k - self.t0, n, p50, p99))
        rows.sort(key=lambda r: r[0])
        return {"t": [round(r[0], 3) for r in rows], "requests": [r[1] for r in rows],
                "p50_ms": [_r(r[2]) for r in rows], "p99_ms": [_r(r[3]) for r in rows]}


def _r(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


__all__ = ["PerSecond", "bucket_quantiles"]
