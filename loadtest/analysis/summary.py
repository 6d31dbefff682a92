"""Put the answers together: the summary.json contract, from a loaded run.

Three steps, each a function of its own:

1. the run's *windows*, from run.json alone (stages, segments, transitions, faults);
2. one *loop* over the records (``passes.run_passes``), a time window at a time, in
   two passes, through every accumulator: memory does not grow with the run;
3. the *findings* (stages, segments, levels, transitions, consistency, faults,
   autoscaling, capacity, bottleneck), which every checker reads (``verdict``).

The unit of analysis is the *segment* (constant replicas, no change under way); the
user's *stages* are reported as such; *levels* aggregate the segments by replica
count; *transitions* and *faults* are judged apart.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from loadtest.analysis.autoscaling import analyse_autoscaling
from loadtest.analysis.bottleneck import bottleneck_findings
from loadtest.analysis.buckets import PerSecond
from loadtest.analysis.capacity import capacity_findings
from loadtest.analysis.checkers import check_all
from loadtest.analysis.checks import accept_unchecked, compose
from loadtest.analysis.consistency import EpochedCounter, store_resets
from loadtest.analysis.distribution import ReplicaChanges, window_distribution
from loadtest.analysis.faults import analyse_faults, fault_slice_window
from loadtest.analysis.findings import Findings
from loadtest.analysis.load import NEEDED, AnalysisInputError, LoadedRun
from loadtest.analysis.passes import Accumulator, Chunk, InputError, run_passes
from loadtest.analysis.stalled import StalledRequests
from loadtest.analysis.state_history import StateHistory
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.throughput import Slice, Timeline, scaling_efficiency
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
from loadtest.contract import events as ev

# 3: a transition's ``cut`` leaves out the app's own 4xx (``app_4xx``); an app without a
# counter that answers 4xx itself refused the request (``fail``, not ``unknown``); ``state``
# has ``counters`` and ``lists``; ``state.sets.stale_reads`` counts each stale read once.
SCHEMA_VERSION = 3
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


@dataclass
class RunWindows:
    """Step 1: when things happened, from run.json alone."""

    t_min: float
    t_max: float
    events: list[dict]
    stages: list[dict]
    intervals: dict[str, dict]
    segments: list
    transitions: list[dict]
    faults: list[dict]
    resets: list[dict]

    @classmethod
    def of(cls, meta: dict, stats: dict, t: Thresholds) -> RunWindows:
        t_min, t_max = float(stats["t_min"]), float(stats["t_max"])
        events = meta.get("stack_events") or []
        stages = stage_windows(meta, t_min, t_max)
        return cls(t_min, t_max, events, stages, service_intervals(events),
                   segments(meta, stages, t_min, t_max, t.transition_margin_s,
                            t.fault_settle_s, t.fault_lead_s, t.transition_lead_s),
                   [tr for tr in transitions(events, t.transition_margin_s,
                                             t.transition_lead_s)
                    if tr["t_start"] < t_max],
                   fault_windows(events), store_resets(events))


@dataclass
class Accumulators:
    """Step 2's accumulators, by what they answer."""

    stages: list[Slice]
    segments: list[Slice]
    transitions: list[Slice]
    faults: dict[int, Slice]
    levels: dict[int, Slice]
    per_second: dict[int, PerSecond]
    changes: list[ReplicaChanges]
    timeline: Timeline
    counter: EpochedCounter
    state: StateHistory
    stalled: StalledRequests

    @classmethod
    def build(cls, w: RunWindows, meta: dict, stats: dict, t: Thresholds,
              controlled: bool) -> Accumulators:
        trans = [Slice(Window(f"transition {i}", tr["t_from"], min(tr["t_end"], w.t_max),
                              int(tr.get("level") or 0))) for i, tr in enumerate(w.transitions)]
        faults: dict[int, Slice] = {}
        applied = [f for f in w.faults if f["applied"] is not None]
        for i, fault in enumerate(applied):
            nxt = applied[i + 1]["applied"] if i + 1 < len(applied) else None
            window = fault_slice_window(fault, nxt, w.t_max, settle_s=t.fault_settle_s,
                                        lead_s=t.fault_lead_s)
            if window is not None:
                faults[fault["index"]] = Slice(window)
        by_level: dict[int, list[Window]] = defaultdict(list)
        for s in w.segments:
            if s.seconds >= t.min_segment_s and not s.faults and s.level:
                by_level[s.level].append(s.window())
        if not controlled:  # nothing known of the replicas: the stages are the levels
            for stage in w.stages:
                by_level[0].append(steady(stage))
        levels = {lv: Slice(ws) for lv, ws in sorted(by_level.items())}
        changes = [ReplicaChanges(s["t_start"], s["t_end"], w.intervals) for s in w.stages]
        if changes:  # what happened after the last stage's end still counts
            changes[-1] = ReplicaChanges(w.stages[-1]["t_start"], w.t_max + 1, w.intervals)
        counter = meta.get("counter") or {}
        return cls([Slice(steady(s)) for s in w.stages], [Slice(s.window()) for s in w.segments],
                   trans, faults, levels,
                   {lv: PerSecond(acc.windows, w.t_min) for lv, acc in levels.items()},
                   changes, Timeline(w.t_min, w.t_max),
                   EpochedCounter(counter.get("before"), counter.get("after"), w.resets,
                                  stats["counter_min"], stats["counter_max"], t.clock_skew_ms),
                   StateHistory(t, _clock_margin(meta, t)),
                   StalledRequests((meta.get("options") or {}).get("request_timeout"),
                                   w.t_min))

    def all(self) -> list[Accumulator]:
        return [*self.stages, *self.segments, *self.transitions, *self.faults.values(),
                *self.levels.values(), *self.per_second.values(), *self.changes,
                self.timeline, self.counter, self.state, self.stalled]


class PlotSample:
    """A spread-out sample of (t_end, counter, hostname) of the ok requests, for figures."""

    def __init__(self, rows: int) -> None:
        self.stride = max(1, rows // PLOT_POINTS)
        self.seen = 0
        self.parts: list[pd.DataFrame] = []

    def __call__(self, chunk: Chunk) -> None:
        index = np.arange(self.seen, self.seen + len(chunk.t_start))
        self.seen += len(chunk.t_start)
        pick = chunk.df.loc[(index % self.stride == 0) & chunk.ok,
                            ["t_end", "counter", "hostname"]]
        self.parts.append(pick.assign(hostname=pick["hostname"].astype(object)))

    def result(self) -> pd.DataFrame:
        return pd.concat(self.parts, ignore_index=True) if self.parts else pd.DataFrame()


def analyse(run: LoadedRun, thresholds: Thresholds, baseline: dict | None = None,
            progress: Callable[[str], None] = lambda _msg: None,
            settings: Settings | None = None) -> Analysis:
    settings = settings or Settings()
    t, meta, source = thresholds, run.meta, run.records
    st = source.stats
    stack = meta.get("stack") or {}
    controlled = bool(stack.get("controlled", True))
    w = RunWindows.of(meta, st, t)
    accs = Accumulators.build(w, meta, st, t, controlled)
    plot = PlotSample(st["rows"])
    progress(f"reading {st['rows']:,} records")
    try:
        seen_rows = run_passes(lambda: source.windows(NEEDED), accs.all(), progress, plot,
                               counted=str((meta.get("options") or {}).get("counter_field"))
                               != "none")
    except InputError as exc:
        raise AnalysisInputError(f"{run.path}: {exc}") from None
    if seen_rows != st["rows"]:  # a scan by time skips rows whose time is not a number
        raise AnalysisInputError(f"{run.path}: {st['rows'] - seen_rows} record(s) could not "
                                 "be placed in time (t_start is not a finite number)")
    f = findings(run, w, accs, t, settings, baseline)
    checks = check_all(f, t)
    unknown_names = accept_unchecked(checks, settings.allow_unchecked)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": meta.get("run_id") or run.path.name,
        "requests": st["rows"],
        "verdict": compose(checks),
        **{k: getattr(f, k) for k in ("stages", "segments", "levels", "transitions", "changes",
                             "deaths", "consistency", "state", "stalled", "faults",
                             "autoscaling",
                             "capacity", "bottleneck", "cpu_by_part")},
        "checks": [c.to_dict() for c in checks],
        "totals": f.totals,
        "run": f.run,
        "thresholds": asdict(t),
        "settings": {"balance": settings.balance, "weights": settings.weights,
                     "allow_unchecked": sorted(settings.allow_unchecked),
                     "unknown_allow_unchecked": unknown_names},
        "timeline": f.timeline,
        "generated_at": time.time(),
    }
    if baseline is not None:
        summary["baseline"] = {"run_id": baseline.get("run_id"),
                               "verdict": baseline.get("verdict"),
                               "levels": [_brief(s) for s in baseline.get("levels")
                                          or baseline.get("stages") or []]}
    return Analysis(summary, plot.result(), f.anomalies)


def findings(run: LoadedRun, w: RunWindows, accs: Accumulators, t: Thresholds,
             settings: Settings, baseline: dict | None) -> Findings:
    """Step 3: everything the checkers read (documented in ``verdict``)."""
    meta, st = run.meta, run.records.stats
    stack = meta.get("stack") or {}
    options = meta.get("options") or {}
    controlled = bool(stack.get("controlled", True))
    intervals = w.intervals if controlled else {}

    def spread(result: dict, window: Window, hosts: list[str] | None) -> dict:
        return window_distribution(result["per_replica"], window, intervals,
                                   settings.balance, settings.weights, expected_hosts=hosts)

    stages = [{"index": s["index"], "level": s["level"], "t_start": s["t_start"],
               "t_ready": s["t_ready"], "t_end": s["t_end"], "users": s["users"],
               **(r := acc.result()), **spread(r, acc.window, None),
               "changes": change.result()}
              for s, acc, change in zip(w.stages, accs.stages, accs.changes)]
    segments_out = [{"index": s.index, "t_start": s.start, "t_end": s.end,
                     "seconds": round(s.seconds, 3),
                     "level": s.level if controlled else len(r["per_replica"]),
                     "planned_level": s.planned_level, "stage": s.stage,
                     "replicas": s.hostnames, "faults": s.faults,
                     "short": s.seconds < t.min_segment_s, **(r := acc.result()),
                     **spread(r, acc.window, s.hostnames if controlled else None)}
                    for s, acc in zip(w.segments, accs.segments)]
    levels = _levels(accs)
    if _constant_load(meta):
        scaling_efficiency(levels)
        scaling_efficiency(stages)
    else:  # with the load changing over time, req/s per replica count says nothing of scaling
        for row in (*levels, *stages):
            row["scaling_efficiency"] = None
    trans_out = [{"index": i, "t_start": tr["t_start"], "t_from": tr["t_from"],
                  "t_ready": tr["t_ready"],
                  "t_end": min(tr["t_end"], w.t_max), "level": tr.get("level"),
                  "previous": tr.get("previous"), "by": tr.get("by"),
                  "failed": tr.get("failed", False),
                  "ready_after_s": None if tr["t_ready"] is None
                  else round(tr["t_ready"] - tr["t_start"], 3), **acc.result()}
                 for i, (tr, acc) in enumerate(zip(w.transitions, accs.transitions))]
    anomalies = accs.counter.anomaly_points()
    timeline = accs.timeline.result()
    run_info = {k: meta.get(k) for k in ("status", "stack", "url", "options", "locust_version",
                                         "started", "ended", "error", "plan", "warnings",
                                         "naming")}
    run_info["stages_missing"] = _stages_missing(meta, w.stages)
    faults = analyse_faults(w.faults, {i: s.result() for i, s in accs.faults.items()},
                            timeline, w.events, w.resets, anomalies, t.fault_p95_margin)
    _mark_slow_recoveries(faults, segments_out, t, w.t_max)
    slo = t.slo_p95_ms if t.slo_p95_ms is not None else (options.get("slo_p95_ms") or None)
    bottleneck = bottleneck_findings(meta.get("cpu"), segments_out, levels, t)
    changes = {kind: [c for stage in stages for c in stage["changes"][kind]]
               for kind in ("added", "removed", "died")}
    killed = {f["details"].get("hostname") for f in w.faults if f["kind"] == "kill-replica"}
    plan = meta.get("plan") or {}
    return Findings(
        run=run_info, totals=_totals(meta, st, run),
        stages=stages, segments=segments_out, levels=levels,
        transitions=trans_out, changes=changes,
        deaths=[{"hostname": e["hostname"], "t": e["t"], "planned": e["hostname"] in killed}
                for e in w.events if e.get("event") == ev.REPLICA_DIED],
        consistency=accs.counter.result(), state=accs.state.result(),
        stalled=accs.stalled.result(),
        anomalies=anomalies, faults=faults,
        autoscaling=analyse_autoscaling(meta, timeline, slo, t.capacity_per_replica,
                                        t.flap_window_s),
        bottleneck=bottleneck, cpu_by_part=_cpu_by_part(meta.get("cpu"), w.t_min),
        capacity=capacity_findings(levels, slo, replica_bound={
            b["level"] for b in bottleneck.get("levels", []) if b["verdict"] == "replicas"}),
        timeline=timeline, t_min=w.t_min, t_max=w.t_max,
        controlled=controlled, known_replicas=set(w.intervals),
        counter_absent=str(options.get("counter_field", "")) == "none",
        expect_replicas=settings.expect_replicas or stack.get("expect_replicas"),
        answered=sorted({h for s in segments_out for h in s["per_replica"]}, key=natural),
        planned_levels=[int(s["level"]) for s in plan.get("stages") or []
                        if isinstance(s, dict) and s.get("level")]
        if controlled and not plan.get("autoscale") else None,
        bad_parts=run.bad_parts, baseline=baseline,
    )


def _cpu_by_part(cpu: dict | None, t0: float) -> dict | None:
    """The sampler's CPU by part, summed to the parts the figure shows (every replica
    together), on the run's time axis."""
    if not isinstance(cpu, dict) or not cpu.get("parts") or cpu.get("t0") is None:
        return None
    parts = cpu["parts"]
    length = max((len(v) for v in parts.values()), default=0)

    def total(names) -> list[float]:
        return [round(sum((parts[n][i] or 0.0) for n in names if i < len(parts[n])), 4)
                for i in range(length)]

    replicas = [n for n in parts if n.startswith("replica:")]
    throttled = cpu.get("throttled_s") or {}
    step = float(cpu.get("interval_s") or 1.0)
    return {"t": [round(cpu["t0"] - t0 + i * step, 3) for i in range(length)],
            "generator": total(["generator"]) if "generator" in parts else None,
            "balancer": total(["balancer"]) if "balancer" in parts else None,
            "store": total(["store"]) if "store" in parts else None,
            "replicas": total(replicas) if replicas else None,
            "throttled": [round(sum((v[i] or 0.0) for v in throttled.values() if i < len(v)), 4)
                          for i in range(length)] if throttled else None,
            "cores": cpu.get("cores")}


def _clock_margin(meta: dict, t: Thresholds) -> float:
    """Clocks of several load-generating processes may disagree: real-time order between
    their operations is certain only beyond this margin."""
    workers = (meta.get("totals") or {}).get("by_worker") or {}
    return t.clock_skew_ms / 1000 if len(workers) > 1 else 0.0


def _levels(accs: Accumulators) -> list[dict]:
    out = []
    for level, acc in accs.levels.items():
        result = acc.result()
        out.append({"level": level, "segments": len(acc.windows), **{
            k: result[k] for k in ("requests", "seconds", "rps", "error_rate", "errors",
                                   "unknown_rate", "latency_ms", "per_replica")},
            **({"latency_from_intended_ms": result["latency_from_intended_ms"]}
               if "latency_from_intended_ms" in result else {}),
            "per_second": accs.per_second[level].result()})
    return out


def _mark_slow_recoveries(faults: list[dict], segments_out: list[dict], t: Thresholds,
                          t_max: float) -> None:
    """A slow recovery disturbs segments past the settle time: they are the fault's."""
    for fault in faults:
        if fault["applied"] is None:
            continue
        start, end = fault_span(fault, t.fault_lead_s, max(
            t.fault_settle_s, fault["recovery_s"] if fault["recovery_s"] is not None
            else t_max - fault["applied"]))
        for seg in segments_out:
            if seg["t_start"] < end and seg["t_end"] > start \
                    and fault["index"] not in seg["faults"]:
                seg["faults"].append(fault["index"])


def _totals(meta: dict, st: dict, run: LoadedRun) -> dict:
    totals = dict(meta.get("totals") or {})
    if totals.get("recorded") is None:
        totals["recorded"] = st["rows"]
    totals.setdefault("locust", None)
    totals["analysed"] = st["rows"]
    totals["naming"] = dict(run.records.naming)  # who named each record's replica
    if run.bad_parts:
        totals["bad_parts"] = run.bad_parts
    return totals


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


__all__ = ["Analysis", "Settings", "analyse", "findings"]
