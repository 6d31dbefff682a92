"""Put the answers together: the summary.json contract, from a loaded run.

Two passes over the records, a time window at a time, so memory does not grow
with the run: the first feeds every accumulator; the second finds the exact
latency percentiles and where the counter anomalies are, for the figures.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from loadtest.analysis import distribution, throughput, verdict
from loadtest.analysis.consistency import CounterChecker
from loadtest.analysis.load import NEEDED, LoadedRun
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.windows import stage_windows, steady, transition

SCHEMA_VERSION = 1
PLOT_POINTS = 40_000


@dataclass
class Analysis:
    summary: dict
    points: pd.DataFrame  # a spread-out sample of (t_end, counter, hostname), for the figures
    anomalies: dict[str, np.ndarray]  # (t_end, value) pairs per anomaly kind


def _rows(df: pd.DataFrame, starts: np.ndarray, a: float, b: float) -> pd.DataFrame:
    return df.iloc[np.searchsorted(starts, a, "left"):np.searchsorted(starts, b, "left")]


def analyse(run: LoadedRun, thresholds: Thresholds, baseline: dict | None = None,
            progress: Callable[[str], None] = lambda _msg: None) -> Analysis:
    meta, source = run.meta, run.records
    st = source.stats
    t_min, t_max = float(st["t_min"]), float(st["t_max"])
    stages_meta = stage_windows(meta, t_min, t_max)
    intervals = distribution.service_intervals(meta.get("stack_events") or [])
    counter = meta.get("counter") or {}

    steadies = [throughput.WindowStats(steady(s)) for s in stages_meta]
    host_counts = [Counter() for _ in stages_meta]
    changes = [distribution.ReplicaChanges(s, intervals) for s in stages_meta]
    trans_meta = [s for s in stages_meta
                  if s["index"] > 0 or s["t_ready"] - s["t_start"] > 0.05]
    transitions = [throughput.WindowStats(transition(s, thresholds.transition_margin_s))
                   for s in trans_meta]
    timeline = throughput.Timeline(t_min, t_max)
    checker = CounterChecker(counter.get("before"), counter.get("after"), st["counter_min"],
                             st["counter_max"], thresholds.clock_skew_ms)
    stride = max(1, st["rows"] // PLOT_POINTS)
    plot_parts, seen_rows = [], 0

    progress(f"pass 1 of 2 over {st['rows']:,} records")
    for df in source.windows(NEEDED):
        starts = df["t_start"].to_numpy()
        for stage, acc, hosts, change in zip(stages_meta, steadies, host_counts, changes):
            part = _rows(df, starts, acc.window.start, acc.window.end)
            acc.add(part)
            hosts.update(distribution.count_hostnames(part))
            change.add(_rows(df, starts, stage["t_start"], stage["t_end"]))
        for acc in transitions:
            acc.add(_rows(df, starts, acc.window.start, acc.window.end))
        timeline.add(df)
        checker.add(df)
        index = np.arange(seen_rows, seen_rows + len(df))
        seen_rows += len(df)
        pick = df.loc[(index % stride == 0) & df["counter"].notna().to_numpy(),
                      ["t_end", "counter", "hostname"]]
        plot_parts.append(pick.assign(hostname=pick["hostname"].astype(object)))

    progress("pass 2 of 2: exact percentiles, anomalies")
    for acc in (*steadies, *transitions):
        acc.plan()
    for df in source.windows(["t_start", "t_end", "latency_ms", "counter", "hostname"]):
        starts = df["t_start"].to_numpy()
        for acc in (*steadies, *transitions):
            acc.collect(_rows(df, starts, acc.window.start, acc.window.end)["latency_ms"]
                        .to_numpy())
        checker.collect(df)

    stages = []
    for stage, acc, hosts, change in zip(stages_meta, steadies, host_counts, changes):
        stages.append({
            "index": stage["index"], "level": stage["level"],
            "t_start": stage["t_start"], "t_ready": stage["t_ready"], "t_end": stage["t_end"],
            "users": stage["users"],
            **acc.result(),
            **distribution.window_distribution(hosts, acc.window, intervals),
            "changes": change.result(),
        })
    throughput.scaling_efficiency(stages)
    trans = [{"stage": s["index"], "level": s["level"], "t_start": acc.window.start,
              "t_end": acc.window.end, "ready_after_s": round(s["t_ready"] - s["t_start"], 3),
              **acc.result()} for s, acc in zip(trans_meta, transitions)]

    totals = dict(meta.get("totals") or {})
    if totals.get("recorded") is None:
        totals["recorded"] = st["rows"]
    totals.setdefault("locust", None)
    totals["analysed"] = st["rows"]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id") or run.path.name,
        "requests": st["rows"],
        "verdict": None,
        "stages": stages,
        "consistency": checker.result(),
        "checks": [],
        "transitions": trans,
        "totals": totals,
        "run": {k: meta.get(k) for k in ("status", "stack", "url", "options", "locust_version",
                                         "started", "ended")},
        "thresholds": asdict(thresholds),
        "timeline": timeline.result(),
        "generated_at": time.time(),
    }
    if baseline is not None:
        summary["baseline"] = {"run_id": baseline.get("run_id"), "verdict": baseline.get("verdict"),
                               "stages": [_brief(s) for s in baseline["stages"]]}
    summary["checks"] = verdict.checks(summary, thresholds, baseline)
    summary["verdict"] = verdict.verdict(summary["checks"])
    points = pd.concat(plot_parts, ignore_index=True) if plot_parts else pd.DataFrame()
    return Analysis(summary, points, checker.anomaly_points())


def _brief(stage: dict) -> dict:
    return {k: stage.get(k) for k in ("index", "level", "requests", "rps", "error_rate",
                                      "latency_ms", "fairness", "scaling_efficiency")}


__all__ = ["Analysis", "analyse"]
