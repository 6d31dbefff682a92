"""Put the answers together: the summary.json contract, from a loaded run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from loadtest.analysis import consistency, distribution, throughput, verdict
from loadtest.analysis.load import LoadedRun
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.windows import stage_windows, steady, transition

SCHEMA_VERSION = 1


@dataclass
class Analysis:
    summary: dict
    records: pd.DataFrame  # sorted by t_start, for the figures
    anomalies: dict  # record row labels per anomaly kind, for the figures


def analyse(run: LoadedRun, thresholds: Thresholds, baseline: dict | None = None,
            progress: Callable[[str], None] = lambda _msg: None) -> Analysis:
    meta = run.meta
    df = run.records.sort_values("t_start", kind="stable", ignore_index=True)
    starts = df["t_start"].to_numpy()
    t_min, t_max = float(starts[0]), float(df["t_end"].max())
    stages_meta = stage_windows(meta, t_min, t_max)
    intervals = distribution.service_intervals(meta.get("stack_events") or [])

    def rows(a: float, b: float) -> pd.DataFrame:
        return df.iloc[np.searchsorted(starts, a, "left"):np.searchsorted(starts, b, "left")]

    progress("distribution and throughput per stage")
    stages, transitions = [], []
    for stage in stages_meta:
        window = steady(stage)
        part = rows(window.start, window.end)
        entry = {
            "index": stage["index"], "level": stage["level"],
            "t_start": stage["t_start"], "t_ready": stage["t_ready"], "t_end": stage["t_end"],
            "users": stage["users"],
            **throughput.window_stats(part, window),
            **distribution.window_distribution(part, window, intervals),
        }
        entry["changes"] = distribution.replica_changes(
            rows(stage["t_start"], stage["t_end"]), stage, intervals)
        stages.append(entry)
        if stage["index"] > 0 or stage["t_ready"] - stage["t_start"] > 0.05:
            tw = transition(stage, thresholds.transition_margin_s)
            stats = throughput.window_stats(rows(tw.start, tw.end), tw)
            transitions.append({"stage": stage["index"], "level": stage["level"],
                                "t_start": tw.start, "t_end": tw.end,
                                "ready_after_s": round(stage["t_ready"] - stage["t_start"], 3),
                                **stats})
    throughput.scaling_efficiency(stages)

    progress("counter consistency")
    counter = meta.get("counter") or {}
    cons = consistency.check(df, counter.get("before"), counter.get("after"),
                             thresholds.clock_skew_ms)
    anomalies = cons.pop("anomaly_index", {})

    totals = dict(meta.get("totals") or {})
    totals["recorded"] = totals.get("recorded") if totals.get("recorded") is not None else len(df)
    totals.setdefault("locust", None)
    totals["analysed"] = len(df)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id") or run.path.name,
        "requests": len(df),
        "verdict": None,
        "stages": stages,
        "consistency": cons,
        "checks": [],
        "transitions": transitions,
        "totals": totals,
        "run": {k: meta.get(k) for k in ("status", "stack", "url", "options", "locust_version",
                                         "started", "ended")},
        "thresholds": asdict(thresholds),
        "timeline": throughput.timeline(df, t_min),
        "generated_at": time.time(),
    }
    if baseline is not None:
        summary["baseline"] = {"run_id": baseline.get("run_id"), "verdict": baseline.get("verdict"),
                               "stages": [_brief(s) for s in baseline["stages"]]}
    summary["checks"] = verdict.checks(summary, thresholds, baseline)
    summary["verdict"] = verdict.verdict(summary["checks"])
    return Analysis(summary, df, anomalies)


def _brief(stage: dict) -> dict:
    return {k: stage.get(k) for k in ("index", "level", "requests", "rps", "error_rate",
                                      "latency_ms", "fairness", "scaling_efficiency")}
