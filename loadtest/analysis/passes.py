"""The analysis' one loop: records in time order, a window at a time, through every
accumulator, in one pass or two.

Every accumulator speaks one protocol (``Accumulator``): ``add(chunk)`` in the first
pass; then ``plan()``; then, for those that need a second look (exact percentiles,
where the counter's anomalies are), ``collect(chunk)`` in the second pass; then
``result()``. A ``Chunk`` is a window of records with the arrays every accumulator
needs, computed once per window, so no accumulator converts a column again.
Memory: one window of records at a time, plus what the accumulators keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loadtest.analysis.latency import bin_index
from loadtest.analysis.outcomes import classify, hidden_attempts, never_reached
from loadtest.contract.records import is_error


@dataclass
class Chunk:
    """One window of records, sorted by t_start, with the arrays accumulators share."""

    df: pd.DataFrame
    t_start: np.ndarray
    t_end: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    err: np.ndarray
    ok: np.ndarray
    fail: np.ndarray
    unknown: np.ndarray
    unreached: np.ndarray       # surely never reached the app (outcomes.never_reached)
    host_codes: np.ndarray      # -1: no replica named
    host_names: list[str]
    intended: np.ndarray        # NaN where the record has none
    counter: np.ndarray         # int64; meaningful where ``ok``
    worker_codes: np.ndarray
    worker_names: list[str]
    user: np.ndarray
    hidden: np.ndarray          # attempts beyond the one that answered
    bins: np.ndarray            # latency.bin_index of each latency, computed once

    @classmethod
    def of(cls, df: pd.DataFrame, counted: bool = True) -> Chunk:
        """``counted``: the app carries a counter (see ``outcomes.classify``)."""
        ok, fail, unknown = classify(df, counted)
        hosts = _categorical(df["hostname"])
        workers = _categorical(df["worker"]) if "worker" in df else \
            pd.Series(["?"] * len(df), dtype="category")
        intended = df["t_intended"].to_numpy(dtype=float, na_value=np.nan) \
            if "t_intended" in df else np.full(len(df), np.nan)
        status = df["status"].to_numpy()
        counter = df["counter"].to_numpy(dtype=np.int64, na_value=0) \
            if ok.any() else np.zeros(len(df), dtype=np.int64)
        return cls(df, df["t_start"].to_numpy(), df["t_end"].to_numpy(),
                   df["latency_ms"].to_numpy(), status, is_error(status), ok, fail, unknown,
                   never_reached(df),
                   hosts.cat.codes.to_numpy().astype(np.int64),
                   [str(c) for c in hosts.cat.categories], intended, counter,
                   workers.cat.codes.to_numpy().astype(np.int64),
                   [str(c) for c in workers.cat.categories],
                   df["user"].to_numpy(dtype=np.int64) if "user" in df
                   else np.zeros(len(df), dtype=np.int64), hidden_attempts(df),
                   bin_index(df["latency_ms"].to_numpy()))

    def subset(self, rows: np.ndarray) -> Chunk:
        """The records at ``rows`` (a mask), as a chunk of their own."""
        kept = {name: getattr(self, name)[rows] for name in (
            "t_start", "t_end", "latency", "status", "err", "ok", "fail", "unknown",
            "unreached", "host_codes", "intended", "counter", "worker_codes", "user", "hidden",
            "bins")}
        return Chunk(self.df[rows].reset_index(drop=True), host_names=self.host_names,
                     worker_names=self.worker_names, **kept)

    def span(self, start: float, end: float) -> tuple[int, int]:
        """Rows whose t_start is in [start, end)."""
        return (int(np.searchsorted(self.t_start, start, "left")),
                int(np.searchsorted(self.t_start, end, "left")))


def _categorical(series: pd.Series) -> pd.Series:
    return series if isinstance(series.dtype, pd.CategoricalDtype) else \
        series.astype("category")


class Accumulator:
    """What the loop feeds. Override ``add`` and ``result``; a second pass also
    overrides ``collect`` and sets ``second_pass``."""

    second_pass = False

    def add(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def plan(self) -> None:
        """Between the passes (e.g. which latency bins the exact percentiles lie in)."""

    def collect(self, chunk: Chunk) -> None:
        """The second pass."""

    def result(self):
        raise NotImplementedError


class InputError(Exception):
    """Records the analysis cannot place: the message is one line."""


def run_passes(windows: Callable[[], Iterable[pd.DataFrame]],
               accumulators: list[Accumulator],
               progress: Callable[[str], None] = lambda _msg: None,
               on_chunk: Callable[[Chunk], None] | None = None, counted: bool = True) -> int:
    """Feed every accumulator every record; return how many records were read.
    ``windows()`` yields the records in time order (called once per pass)."""
    rows = 0
    progress("pass 1 of 2")
    kept: list[Chunk] = []  # a run that fits in one window is read once, not twice
    for n, df in enumerate(windows()):
        chunk = Chunk.of(df, counted)
        kept = [chunk] if n == 0 else []
        bad = int((~np.isfinite(chunk.t_start) | ~np.isfinite(chunk.t_end)
                   | ~np.isfinite(chunk.latency)).sum())
        if bad:  # bad input, not the app's fault: judging it would blame the app
            raise InputError(f"{bad} record(s) have a time or a latency that is not a "
                             "finite number")
        for acc in accumulators:
            acc.add(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
        rows += len(df)
    for acc in accumulators:
        acc.plan()
    second = [acc for acc in accumulators if acc.second_pass]
    if second:
        progress("pass 2 of 2: exact percentiles, anomalies")
        again = kept or (Chunk.of(df, counted) for df in windows())
        for chunk in again:
            for acc in second:
                acc.collect(chunk)
    return rows
