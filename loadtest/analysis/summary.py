"""Put the answers together: the summary.json contract, from a loaded run.

Two passes over the records, a time window at a time, so memory does not grow
with the run: the first feeds every accumulator; the second finds the exact
latency percentiles and where the counter anomalies are, for the figures.

The unit of analysis is the *segment* (constant replicas, no change under
way); the user's *stages* are reported as such; *levels* aggregate the
segments by replica count; *transitions* and *faults* are judged apart.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from loadtest import events as ev
from loadtest.analysis import verdict as v
from loadtest.analysis.autoscaling import analyse_autoscaling
from loadtest.analysis.buckets import PerSecond
from loadtest.analysis.compare import regression_checks
from loadtest.analysis.consistency import EpochedCounter, store_resets
from loadtest.analysis.distribution import ReplicaChanges, window_distribution
from loadtest.analysis.faults import analyse_faults, fault_slice_window
from loadtest.analysis.load import NEEDED, AnalysisInputError, LoadedRun
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.throughput import Chunk, Slice, Timeline, scaling_efficiency
from loadtest.analysis.windows import (
    Window,
    fault_span,
    fault_windows,
    natural,
    segments,
    service_intervals,
    stage_windows,
    steady,
    transitions,
)

SCHEMA_VERSION = 2
PLOT_POINTS = 40_000


@dataclass
class Settings:
    """How to read the run (not thresholds): the balancing policy and what to accept."""

    balance: str = "roundrobin"
    weights: dict = field(default_factory=dict)
    allow_unchecked: set = field(default_factory=set)
    expect_replicas: int | None = None


@dataclass
class Analysis:
    summary: dict
    points: pd.DataFrame  # a spread-out sample of (t_end, counter, hostname), for the figures
    anomalies: dict[str, np.ndarray]  # (t_end, value) pairs per anomaly kind


def analyse(run: LoadedRun, thresholds: Thresholds, baseline: dict | None = None,
            progress: Callable[[str], None] = lambda _msg: None,
            settings: Settings | None = None) -> Analysis:
    settings = settings or Settings()
    t = thresholds
    meta, source = run.meta, run.records
    st = source.stats
    t_min, t_max = float(st["t_min"]), float(st["t_max"])
    events = meta.get("stack_events") or []
    options = meta.get("options") or {}
    stack = meta.get("stack") or {}
    controlled = bool(stack.get("controlled", True))
    counter_absent = str(options.get("counter_field", "")) == "none"

    stages_meta = stage_windows(meta, t_min, t_max)
    intervals = service_intervals(events)
    segs = segments(meta, stages_meta, t_min, t_max, t.transition_margin_s, t.fault_settle_s,
                    t.fault_lead_s)
    trans = [tr for tr in transitions(events, t.transition_margin_s) if tr["t_start"] < t_max]
    faults = fault_windows(events)
    resets = store_resets(events)
    counter = meta.get("counter") or {}

    stage_slices = [Slice(steady(s)) for s in stages_meta]
    seg_slices = [Slice(s.window()) for s in segs]
    trans_slices = [Slice(Window(f"transition {i}", tr["t_start"], min(tr["t_end"], t_max),
                                 int(tr.get("level") or 0)))
                    for i, tr in enumerate(trans)]
    fault_slices: dict[int, Slice] = {}
    applied = [f for f in faults if f["applied"] is not None]
    for i, fault in enumerate(applied):
        nxt = applied[i + 1]["applied"] if i + 1 < len(applied) else None
        window = fault_slice_window(fault, nxt, t_max, settle_s=t.fault_settle_s,
                                    lead_s=t.fault_lead_s)
        if window is not None:
            fault_slices[fault["index"]] = Slice(window)
    by_level: dict[int, list[Window]] = defaultdict(list)
    for s in segs:
        if s.seconds >= t.min_segment_s and not s.faults and s.level:
            by_level[s.level].append(s.window())
    if not controlled:  # nothing known of the replicas: the stages are the levels
        for stage in stages_meta:
            by_level[0].append(steady(stage))
    level_slices = {lv: Slice(ws) for lv, ws in sorted(by_level.items())}
    level_seconds = {lv: PerSecond(acc.windows, t_min) for lv, acc in level_slices.items()}
    all_slices = [*stage_slices, *seg_slices, *trans_slices, *fault_slices.values(),
                  *level_slices.values()]
    stage_changes = [ReplicaChanges(s["t_start"], s["t_end"], intervals) for s in stages_meta]
    if stage_changes:  # what happened after the last stage's end still counts
        stage_changes[-1] = ReplicaChanges(stages_meta[-1]["t_start"], t_max + 1, intervals)
    timeline = Timeline(t_min, t_max)
    checker = EpochedCounter(counter.get("before"), counter.get("after"), resets,
                             st["counter_min"], st["counter_max"], t.clock_skew_ms)
    stride = max(1, st["rows"] // PLOT_POINTS)
    plot_parts, seen_rows = [], 0

    progress(f"pass 1 of 2 over {st['rows']:,} records")
    for df in source.windows(NEEDED):
        chunk = Chunk.of(df)
        bad_numbers = int((~np.isfinite(chunk.t_start) | ~np.isfinite(chunk.t_end)
                           | ~np.isfinite(chunk.latency)).sum())
        if bad_numbers:  # bad input, not the app's fault: judging it would blame the app
            raise AnalysisInputError(f"{run.path}: {bad_numbers} record(s) have a time or a "
                                     "latency that is not a finite number")
        for acc in all_slices:
            acc.add(chunk)
        for per_second in level_seconds.values():
            per_second.add(chunk)
        for change in stage_changes:
            change.add(chunk)
        timeline.add(chunk)
        checker.add(df, chunk.ok, chunk.fail, chunk.unknown)
        index = np.arange(seen_rows, seen_rows + len(df))
        seen_rows += len(df)
        pick = df.loc[(index % stride == 0) & chunk.ok, ["t_end", "counter", "hostname"]]
        plot_parts.append(pick.assign(hostname=pick["hostname"].astype(object)))

    if seen_rows != st["rows"]:  # a scan by time skips rows whose time is not a number
        raise AnalysisInputError(f"{run.path}: {st['rows'] - seen_rows} record(s) could not "
                                 "be placed in time (t_start is not a finite number)")
    progress("pass 2 of 2: exact percentiles, anomalies")
    for acc in all_slices:
        acc.plan()
    checker.prepare()
    for df in source.windows(NEEDED):
        chunk = Chunk.of(df)
        for acc in all_slices:
            acc.collect(chunk)
        checker.collect(df, chunk.ok)

    policy, weights = settings.balance, settings.weights

    def spread(result: dict, window: Window, hosts: list[str] | None) -> dict:
        return window_distribution(result["per_replica"], window, intervals if controlled else {},
                                   policy, weights, expected_hosts=hosts)

    stages = []
    for stage, acc, change in zip(stages_meta, stage_slices, stage_changes):
        result = acc.result()
        stages.append({"index": stage["index"], "level": stage["level"],
                       "t_start": stage["t_start"], "t_ready": stage["t_ready"],
                       "t_end": stage["t_end"], "users": stage["users"], **result,
                       **spread(result, acc.window, None), "changes": change.result()})
    segments_out = []
    for seg, acc in zip(segs, seg_slices):
        result = acc.result()
        segments_out.append({
            "index": seg.index, "t_start": seg.start, "t_end": seg.end,
            "seconds": round(seg.seconds, 3), "level": seg.level if controlled else
            len(result["per_replica"]), "planned_level": seg.planned_level, "stage": seg.stage,
            "replicas": seg.hostnames, "faults": seg.faults,
            "short": seg.seconds < t.min_segment_s, **result,
            **spread(result, acc.window, seg.hostnames if controlled else None)})
    levels = []
    for level, acc in level_slices.items():
        result = acc.result()
        levels.append({"level": level, "segments": len(acc.windows), **{
            k: result[k] for k in ("requests", "seconds", "rps", "error_rate", "errors",
                                   "unknown_rate", "latency_ms", "per_replica")},
            **({"latency_from_intended_ms": result["latency_from_intended_ms"]}
               if "latency_from_intended_ms" in result else {}),
            "per_second": level_seconds[level].result()})
    if _constant_load(meta):
        scaling_efficiency(levels)
        scaling_efficiency(stages)
    else:  # with the load changing over time, req/s per replica count says nothing of scaling
        for row in (*levels, *stages):
            row["scaling_efficiency"] = None
    trans_out = [{"index": i, "t_start": tr["t_start"], "t_ready": tr["t_ready"],
                  "t_end": min(tr["t_end"], t_max), "level": tr.get("level"),
                  "previous": tr.get("previous"), "by": tr.get("by"),
                  "failed": tr.get("failed", False),
                  "ready_after_s": None if tr["t_ready"] is None
                  else round(tr["t_ready"] - tr["t_start"], 3), **acc.result()}
                 for i, (tr, acc) in enumerate(zip(trans, trans_slices))]

    consistency = checker.result()
    anomalies = checker.anomaly_points()
    timeline_out = timeline.result()
    run_info = {k: meta.get(k) for k in ("status", "stack", "url", "options", "locust_version",
                                         "started", "ended", "error", "plan", "warnings")}
    run_info["stages_missing"] = _stages_missing(meta, stages_meta)
    fault_results = analyse_faults(faults, {i: s.result() for i, s in fault_slices.items()},
                                   timeline_out, events, resets, anomalies, t.fault_p95_margin)
    for fault in fault_results:  # a slow recovery disturbs segments past the settle time
        if fault["applied"] is None:
            continue
        start, end = fault_span(fault, t.fault_lead_s, max(
            t.fault_settle_s, fault["recovery_s"] if fault["recovery_s"] is not None
            else t_max - fault["applied"]))
        for seg in segments_out:
            if seg["t_start"] < end and seg["t_end"] > start \
                    and fault["index"] not in seg["faults"]:
                seg["faults"].append(fault["index"])
    slo = t.slo_p95_ms if t.slo_p95_ms is not None else (options.get("slo_p95_ms") or None)
    autoscaling = analyse_autoscaling(meta, timeline_out, slo, t.capacity_per_replica,
                                      t.flap_window_s)
    totals = dict(meta.get("totals") or {})
    if totals.get("recorded") is None:
        totals["recorded"] = st["rows"]
    totals.setdefault("locust", None)
    totals["analysed"] = st["rows"]
    totals["naming"] = dict(source.naming)  # who named each record's replica
    if run.bad_parts:
        totals["bad_parts"] = run.bad_parts

    changes = {kind: [c for st in stages for c in st["changes"][kind]]
               for kind in ("added", "removed", "died")}
    killed = {f["details"].get("hostname") for f in faults if f["kind"] == "kill-replica"}
    deaths = [{"hostname": e["hostname"], "t": e["t"], "planned": e["hostname"] in killed}
              for e in events if e.get("event") == ev.REPLICA_DIED]
    answered = sorted({h for s in segments_out for h in s["per_replica"]}, key=natural)
    expect = settings.expect_replicas or stack.get("expect_replicas")

    planned = [int(s["level"]) for s in (meta.get("plan") or {}).get("stages") or []
               if isinstance(s, dict) and s.get("level")] \
        if controlled and not (meta.get("plan") or {}).get("autoscale") else None
    checks = [*v.run_checks(run_info, run.bad_parts), v.records_check(totals),
              *v.counter_checks(consistency, counter_absent,
                                incomplete=v.records_incomplete(totals)),
              *v.load_checks(segments_out, t, planned), *v.level_checks(levels, t),
              *v.stack_checks(changes, deaths, controlled, expect, answered,
                              v.judged(segments_out, t), set(intervals)),
              *v.transition_checks(trans_out, fault_results, t, t_max, t_min),
              *v.fault_checks(fault_results, t), *v.autoscaling_checks(autoscaling, t)]
    if baseline is not None:
        checks.extend(regression_checks(levels, baseline, t))
    unknown_names = v.accept_unchecked(checks, settings.allow_unchecked)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id") or run.path.name,
        "requests": st["rows"],
        "verdict": v.compose(checks),
        "stages": stages,
        "segments": segments_out,
        "levels": levels,
        "transitions": trans_out,
        "changes": changes,
        "deaths": deaths,
        "consistency": consistency,
        "faults": fault_results,
        "autoscaling": autoscaling,
        "checks": [c.to_dict() for c in checks],
        "totals": totals,
        "run": run_info,
        "thresholds": asdict(t),
        "settings": {"balance": policy, "weights": weights,
                     "allow_unchecked": sorted(settings.allow_unchecked),
                     "unknown_allow_unchecked": unknown_names},
        "timeline": timeline_out,
        "generated_at": time.time(),
    }
    if baseline is not None:
        summary["baseline"] = {"run_id": baseline.get("run_id"),
                               "verdict": baseline.get("verdict"),
                               "levels": [_brief(s) for s in baseline.get("levels")
                                          or baseline.get("stages") or []]}
    points = pd.concat(plot_parts, ignore_index=True) if plot_parts else pd.DataFrame()
    return Analysis(summary, points, anomalies)


def _constant_load(meta: dict) -> bool:
    """The same closed-model load throughout (what scaling efficiency compares under)."""
    plan = meta.get("plan") or {}
    load = plan.get("load") or {}
    if plan.get("autoscale") or load.get("model", "closed") != "closed":
        return False
    values = {v for _, v in load.get("points") or []}
    return len(values) <= 1


def _stages_missing(meta: dict, stages: list[dict]) -> list[dict]:
    """Planned stages that never started, or never got their replicas."""
    planned = ((meta.get("plan") or {}).get("stages")) or []
    recorded = {s["index"]: s for s in meta.get("stages") or []}
    missing = []
    for stage in planned:
        got = recorded.get(stage.get("index"))
        if got is None:
            missing.append({"index": stage.get("index"), "level": stage.get("level"),
                            "why": "never started"})
        elif got.get("t_ready") is None:
            missing.append({"index": stage.get("index"), "level": stage.get("level"),
                            "why": "its replicas were never ready"})
    return missing


def _brief(stage: dict) -> dict:
    return {k: stage.get(k) for k in ("index", "level", "requests", "rps", "error_rate",
                                      "latency_ms", "fairness", "scaling_efficiency")}


__all__ = ["Analysis", "Settings", "analyse"]
