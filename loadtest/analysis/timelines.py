"""Replica counts over time of several autoscaled runs, set against each other.

The question of issue 24: does the simulation (``--autoscale hpa``) follow the real
controller (``--autoscale cluster``) on the same load? From the summaries alone (pure):
each run's replicas in service per second and its asked changes; against the first run,
the largest difference at any second, the largest outside a settling window after each
of the first run's changes (a few seconds' lag in when a change lands is not a different
policy), replica-seconds and the time to scale.
"""

from __future__ import annotations

SETTLE_S = 30.0


def timeline(summary: dict) -> dict | None:
    """One run's replica timeline, or None if it was not autoscaled."""
    scaling = summary.get("autoscaling")
    if not scaling:
        return None
    replicas = list((scaling.get("series") or {}).get("replicas") or [])
    return {"policy": scaling.get("policy"), "replicas": replicas,
            "changes": [tuple(c) for c in scaling.get("changes_at") or []],
            "replica_seconds": scaling.get("replica_seconds"),
            "max_time_to_scale_s": scaling.get("max_time_to_scale_s"),
            "decisions": scaling.get("decisions")}


def difference(base: dict, other: dict, settle_s: float = SETTLE_S) -> dict:
    """``other`` against ``base``, second by second over the seconds both ran."""
    n = min(len(base["replicas"]), len(other["replicas"]))
    diffs = [other["replicas"][i] - base["replicas"][i] for i in range(n)]
    settling = set()
    for t, _level in base["changes"]:
        settling.update(range(max(0, int(t)), min(n, int(t + settle_s) + 1)))
    outside = [abs(d) for i, d in enumerate(diffs) if i not in settling]
    worst = max(range(n), key=lambda i: abs(diffs[i]), default=None)
    rs_base, rs_other = sum(base["replicas"][:n]), sum(other["replicas"][:n])
    return {
        "seconds": n,
        "max_abs_diff": abs(diffs[worst]) if worst is not None else None,
        "max_abs_diff_at_s": worst,
        "max_abs_diff_outside_settle": max(outside, default=None),
        "settle_s": settle_s,
        "seconds_apart": sum(1 for d in diffs if d),
        "replica_seconds": (rs_base, rs_other),
        "replica_seconds_ratio": round(rs_other / rs_base, 3) if rs_base else None,
        "changes": (len(base["changes"]), len(other["changes"])),
    }


def compare_timelines(summaries: list[dict], names: list[str],
                      settle_s: float = SETTLE_S) -> dict | None:
    """Every autoscaled run's timeline, and each against the first autoscaled one."""
    runs = [(name, t) for name, s in zip(names, summaries) if (t := timeline(s)) is not None]
    if not runs:
        return None
    (first_name, first), rest = runs[0], runs[1:]
    return {"runs": [{"name": name, **t} for name, t in runs], "first": first_name,
            "against_first": [{"name": name, **difference(first, t, settle_s)}
                              for name, t in rest]}


__all__ = ["SETTLE_S", "compare_timelines", "difference", "timeline"]
