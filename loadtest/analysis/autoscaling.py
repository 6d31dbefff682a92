"""How well did the autoscaler do? Replicas against load and latency, over time.

From the per-second timeline and the run's events (pure functions):

- replicas in service each second, against the offered load (open model:
  the arrivals that were due, taken or dropped; closed model: completions)
  and the p95 latency;
- for each rise of load (the replicas needed rising above those in
  service): the time until the autoscaler asked for more (detect) and until
  they were routed (ready);
- replica-seconds used, and under-/over-provisioned replica-seconds against
  the replicas needed: ``ceil(offered / capacity per replica)``, where the
  capacity is ``--capacity-per-replica`` if given, else the autoscaler's
  requests/s target, else measured from the run (the highest requests/s per
  replica sustained for 5 s while p95 met the SLO);
- seconds and requests over the SLO (p95 per second above ``slo_p95_ms``);
- flaps: a scale change reversed within ``flap_window_s``.
"""

from __future__ import annotations

import math

import numpy as np

from loadtest.analysis.windows import out_of_service, service_intervals
from loadtest.contract import events as ev


def replicas_per_second(events: list[dict], t0: float, seconds: int) -> np.ndarray:
    """Replicas in service at the middle of each second."""
    out = np.zeros(seconds, dtype=np.int64)
    mids = t0 + np.arange(seconds) + 0.5
    for iv in service_intervals(events).values():
        start = iv["added"] if iv["added"] is not None else -math.inf
        out += (mids >= start) & (mids < out_of_service(iv))
    return out


def offered_per_second(timeline: dict, meta: dict) -> tuple[np.ndarray, str]:
    n = timeline["seconds"]
    if "intended" in timeline:
        offered = np.array(timeline["intended"], dtype=float)
        for second, count in (meta.get("dropped_arrivals") or {}).get("by_second", []):
            i = int(second - math.floor(timeline["t0"]))
            if 0 <= i < n:
                offered[i] += count
        return offered, "arrivals due (open model: sent + dropped)"
    return np.array(timeline["total"], dtype=float), "requests completed (closed model)"


def flaps(changes: list[tuple[float, int]], window: float) -> list[dict]:
    """Scale changes reversed within ``window`` seconds: (time, new level) in order."""
    out = []
    previous_level = None
    last = None  # (t, direction)
    for t, level in changes:
        if previous_level is not None and level != previous_level:
            direction = 1 if level > previous_level else -1
            if last is not None and direction != last[1] and t - last[0] < window:
                out.append({"t": t, "after_s": round(t - last[0], 3), "to": level})
            last = (t, direction)
        previous_level = level
    return out


def measured_capacity(per_host_rps: np.ndarray, p95: list, slo_ms: float | None) -> float | None:
    """Highest requests/s per replica sustained 5 s with p95 within the SLO."""
    best = None
    n = len(per_host_rps)
    for i in range(max(0, n - 4)):
        window = per_host_rps[i:i + 5]
        if slo_ms:
            lat = [p for p in p95[i:i + 5] if p is not None]
            if not lat or max(lat) > slo_ms:
                continue
        value = float(window.min())
        if value > 0 and (best is None or value > best):
            best = value
    return best


def _up_tolerance(plan: dict | None) -> float:
    """The HPA's tolerance on a scale-up: its behavior's own (a manifest's
    ``scaleUp.tolerance``) where it has one, else the one tolerance."""
    plan = plan or {}
    up = (plan.get("behavior") or {}).get("tolerance_up")
    return float(up if up is not None else plan.get("tolerance") or 0.0)


def analyse_autoscaling(meta: dict, timeline: dict, slo_ms: float | None,
                        capacity: float | None, flap_window_s: float | None) -> dict | None:
    events = meta.get("stack_events") or []
    decisions = [e for e in events if e.get("event") == ev.AUTOSCALE_DECISION]
    plan = (meta.get("plan") or {}).get("autoscale")
    if not plan and not decisions:
        return None
    t0, n = timeline["t0"], timeline["seconds"]
    replicas = replicas_per_second(events, t0, n)
    offered, offered_source = offered_per_second(timeline, meta)
    p95 = timeline["p95_ms"]
    total = np.array(timeline["total"], dtype=float)
    capacity_source = "--capacity-per-replica"
    if capacity is None and plan and plan.get("metric") == "rps":
        capacity, capacity_source = float(plan["target"]), "the autoscaler's target (req/s)"
    if capacity is None:
        per = np.divide(total, np.maximum(replicas, 1))
        capacity = measured_capacity(per, p95, slo_ms)
        capacity_source = "measured in this run (best 5 s per replica" + \
            (", p95 within the SLO)" if slo_ms else ")")
    lo = int(plan.get("min_replicas", 1)) if plan else 1
    hi = int(plan.get("max_replicas", 10**6)) if plan else 10**6
    needed = None
    under = over = None
    rises = []
    policy = (plan or {}).get("policy")
    period = 2.0 if policy == "kpa" else float((plan or {}).get("period") or 15.0)
    if capacity:
        needed = np.clip(np.ceil(offered / capacity), lo, hi).astype(np.int64)
        under = int(np.maximum(needed - replicas, 0).sum())
        over = int(np.maximum(replicas - needed, 0).sum())
        # A rise the autoscaler is judged on: beyond its own tolerance, and lasting at
        # least one of its periods (a shorter one no autoscaler could have seen).
        tolerance = _up_tolerance(plan) if policy == "hpa" else 0.0
        beyond = np.clip(np.ceil(offered / (capacity * (1 + tolerance))), lo,
                         hi).astype(np.int64)
        rises = _rises(beyond, replicas, t0, events, min_s=period)
    asked = [(e["t"], int(e["level"])) for e in events
             if e.get("event") == ev.SCALE_ASKED and e.get("by") in ("autoscaler", "up")]
    if flap_window_s is None:  # two decisions in a row that undo each other
        flap_window_s = 2 * period
    flapped = flaps(asked, flap_window_s)
    over_slo = [i for i, p in enumerate(p95) if slo_ms and p is not None and p > slo_ms]
    detect = [r["detect_s"] for r in rises if r["detect_s"] is not None]
    ready = [r["ready_s"] for r in rises if r["ready_s"] is not None]
    return {
        "policy": policy or (decisions[0].get("policy") if decisions else None),
        "metric": (plan or {}).get("metric"),
        "target": (plan or {}).get("target"),
        "decisions": len(decisions),
        "scale_changes": len([a for a in asked if a[0] > t0]),
        "replica_seconds": int(replicas.sum()),
        "capacity_per_replica": capacity,
        "capacity_source": capacity_source,
        "offered_source": offered_source,
        "under_provisioned_replica_s": under,
        "over_provisioned_replica_s": over,
        "rises": rises,
        "max_time_to_detect_s": max(detect) if detect else None,
        # None when it cannot be told: capacity unknown, or a rise still open at the end
        "max_time_to_scale_s": None if not capacity else
        (max(ready) if ready else None) if rises else 0.0,
        "rises_never_met": sum(1 for r in rises if r["ready_s"] is None),
        "longest_open_rise_s": max((r["lasted_s"] for r in rises if r["ready_s"] is None),
                                   default=None),
        "slo_p95_ms": slo_ms,
        "slo_violation_s": len(over_slo) if slo_ms else None,
        "slo_violation_requests": int(sum(total[i] for i in over_slo)) if slo_ms else None,
        "flaps": len(flapped),
        "flap_window_s": flap_window_s,
        "flap_examples": flapped[:10],
        # when each change was asked (seconds since the timeline's start) and to what: the
        # compared runs' timelines are drawn and set against each other from these
        "changes_at": [[round(t - t0, 3), level] for t, level in asked][:1000],
        "series": {"replicas": replicas.tolist(), "offered": offered.tolist(),
                   "needed": needed.tolist() if needed is not None else None},
        "decision_examples": [_brief(d) for d in decisions[:5]],
    }


def _rises(needed: np.ndarray, replicas: np.ndarray, t0: float, events: list[dict],
           min_s: float = 1.0) -> list:
    """Each time the replicas needed rose above those in service for ``min_s`` seconds
    or more: when the autoscaler asked for more, and how long until the replicas in
    service covered the need again (``ready_s``; None if the run ended first)."""
    out = []
    short = needed > replicas
    asks = sorted((e["t"], int(e["level"])) for e in events
                  if e.get("event") == ev.SCALE_ASKED and e.get("by") == "autoscaler")
    i = 0
    while i < len(short):
        if not (short[i] and (i == 0 or not short[i - 1])):
            i += 1
            continue
        j = i
        while j < len(short) and short[j]:
            j += 1
        if j - i >= min_s:
            start = t0 + i
            have = int(replicas[i])
            ask = next(((t, lv) for t, lv in asks if t >= start - 1 and lv > have), None)
            out.append({"t": start, "needed": int(needed[i:j].max()), "had": have,
                        "lasted_s": j - i,
                        "detect_s": None if ask is None else round(max(0.0, ask[0] - start), 3),
                        "ready_s": None if j == len(short) else float(j - i)})
        i = j
    return out


def _brief(decision: dict) -> dict:
    keys = ("t", "current", "ready", "average", "ratio", "raw", "within_tolerance",
            "stabilized", "after_policies", "stable_average", "panic_average", "panicking",
            "final", "reasons", "source")
    return {k: decision.get(k) for k in keys if k in decision}
