"""How did the app come through each fault? Impact and recovery, per fault.

For each fault in the run's events (pure functions of the timeline, the
events and the fault windows' accumulated records):

- its kind, when it was asked, applied and ended, and on what (a replica);
- what it caused: errors and unknown outcomes, by kind and by replica, from
  its start until it settled (the fault's end plus ``settle_s``);
- ``recovery_s``: from the fault's end to the first second from which, for
  ``hold_s`` seconds, the app answered with an error rate back to its level
  before the fault (or 1 %, whichever is higher) and a p95 latency within
  ``p95_margin`` of its level before (or 10 ms above it); None if it never
  recovered before the run ended;
- whether a killed replica was replaced (``--replace-dead``), and how soon;
- what the counter says around it: a restart of Redis without persistence
  resets the counter (named as such), anomalies near the fault.
"""

from __future__ import annotations

import math

import numpy as np

from loadtest.analysis.windows import Window, fault_span
from loadtest.contract import events as ev

BASELINE_S = 10.0
HOLD_S = 3


def fault_slice_window(fault: dict, next_applied: float | None, t_max: float,
                       settle_s: float, lead_s: float = 0.0) -> Window | None:
    """From ``lead_s`` before the fault (requests then still in flight were struck by it)
    to ``settle_s`` after its end, or the next fault."""
    if fault["applied"] is None:
        return None
    start, end = fault_span(fault, lead_s, settle_s)
    if next_applied is not None:
        end = min(end, next_applied - lead_s)
    return Window(f"fault {fault['index']}", start, max(start + 1e-3, min(end, t_max)))


def recovery(timeline: dict, since: float, base_err: float, base_p95: float | None,
             p95_margin: float, hold_s: int = HOLD_S) -> float | None:
    """Seconds from ``since`` until the app is back to its level before."""
    t0 = timeline["t0"]
    total, errors, p95 = timeline["total"], timeline["errors"], timeline["p95_ms"]
    err_limit = max(2 * base_err, 0.01)
    p95_limit = None if base_p95 is None else max(base_p95 * p95_margin, base_p95 + 10.0)
    first = max(0, int(math.floor(since - t0)))

    def good(i: int) -> bool:
        if total[i] == 0:
            return False
        if errors[i] / total[i] > err_limit:
            return False
        return p95_limit is None or (p95[i] is not None and p95[i] <= p95_limit)

    n = len(total)
    for i in range(first, n - hold_s + 1):
        if all(good(j) for j in range(i, i + hold_s)):
            return round(max(0.0, t0 + i - since), 3)
    return None


def baseline(timeline: dict, before: float, since: float) -> tuple[float, float | None, float]:
    """(error rate, p95 ms, requests/s) over whole seconds in [since, before)."""
    t0 = timeline["t0"]
    lo = max(0, int(math.ceil(since - t0)))
    hi = max(lo, int(math.floor(before - t0)))
    total = np.array(timeline["total"][lo:hi], dtype=float)
    errors = np.array(timeline["errors"][lo:hi], dtype=float)
    p95 = [p for p in timeline["p95_ms"][lo:hi] if p is not None]
    if total.sum() == 0:
        return 0.0, None, 0.0
    return (float(errors.sum() / total.sum()), float(np.median(p95)) if p95 else None,
            float(total.sum() / max(hi - lo, 1)))


def analyse_faults(faults: list[dict], slices: dict[int, dict], timeline: dict,
                   events: list[dict], resets: list[dict], anomalies: dict,
                   p95_margin: float) -> list[dict]:
    out = []
    previous_end = timeline["t0"]
    for fault in faults:
        entry = {"index": fault["index"], "kind": fault["kind"], "spec": fault["spec"],
                 "asked": fault["asked"], "applied": fault["applied"], "ended": fault["ended"],
                 "failed": fault["failed"], "details": fault["details"]}
        if fault["applied"] is None:
            entry.update(recovery_s=None, recovered=None,
                         note=f"not applied: {fault['failed'] or 'no fault_applied event'}")
            out.append(entry)
            continue
        since = max(previous_end, fault["applied"] - BASELINE_S)
        base_err, base_p95, base_rps = baseline(timeline, fault["applied"], since)
        end = fault["ended"] or fault["applied"]
        rec = recovery(timeline, end, base_err, base_p95, p95_margin)
        caused = slices.get(fault["index"], {})
        entry.update({
            "duration_s": round(end - fault["applied"], 3),
            "before": {"error_rate": base_err, "p95_ms": base_p95, "rps": base_rps},
            "requests": caused.get("requests", 0),
            "errors": caused.get("errors", 0),
            "unknown": caused.get("unknown", 0),
            "error_rate": caused.get("error_rate", 0.0),
            "errors_by_kind": caused.get("errors_by_kind", {}),
            "errors_by_replica": {h: v["errors"] for h, v in
                                  caused.get("per_replica", {}).items() if v["errors"]},
            "p99_ms": (caused.get("latency_ms") or {}).get("p99"),
            "recovery_s": rec,
            "recovered": rec is not None,
            # how long the run went on after the fault ended: too short to see a recovery
            # is not the same as no recovery
            "observed_after_s": round(max(0.0, timeline["t0"] + len(timeline["total"]) - end),
                                      3),
        })
        hostname = fault["details"].get("hostname")
        if fault["kind"] == "kill-replica" and hostname:
            entry["replaced_after_s"] = _replaced(events, hostname, fault["applied"])
        reset = next((r for r in resets if r.get("fault") == fault["index"]), None)
        if fault["kind"] == "restart-redis":
            entry["counter_reset"] = reset is not None
            if reset is not None:
                entry["note"] = (f"Redis restarted without persistence: the counter went from "
                                 f"{reset['counter_before']} back to {reset['counter_after']}; "
                                 "the history is checked on each side of the reset")
        window = (fault["applied"] - 1, end + (rec or 0) + 1)
        entry["counter_anomalies_around"] = {
            kind: int(((points[:, 0] >= window[0]) & (points[:, 0] <= window[1])).sum())
            for kind, points in anomalies.items() if len(points)}
        out.append(entry)
        previous_end = end + (rec or 0)
    return out


def _replaced(events: list[dict], hostname: str, after: float) -> float | None:
    died = next((e["t"] for e in events if e.get("event") == ev.REPLICA_DIED
                 and e.get("hostname") == hostname and e["t"] >= after - 1), None)
    if died is None:
        return None
    added = next((e["t"] for e in sorted(events, key=lambda e: e["t"])
                  if e.get("event") == ev.REPLICA_ADDED and e["t"] >= died), None)
    return None if added is None else round(added - after, 3)
