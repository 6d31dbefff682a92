"""Did the balancer spread requests evenly over the replicas that were up?

Counts are normalised by the time each replica was in service inside the
window, so a replica that joined mid-window is not called starved. The
fairness figures (Jain's index, coefficient of variation, max/mean, and a
chi-square p-value against an even split) are computed on those rates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from loadtest.analysis.windows import Window


def service_intervals(events: list[dict]) -> dict[str, dict]:
    """Per replica: when it was added, when its removal began and ended, when it died."""
    out: dict[str, dict] = {}
    for event in events or []:
        name = event.get("hostname")
        if not name:
            continue
        entry = out.setdefault(name, {"added": None, "removing": None, "removed": None,
                                      "died": None})
        kind = event.get("event")
        if kind == "replica_added":
            entry["added"] = event["t"]
        elif kind == "replica_removing":
            entry["removing"] = event["t"]
        elif kind == "replica_removed":
            entry["removed"] = event["t"]
        elif kind == "replica_died":
            entry["died"] = event["t"]
    return out


def in_service(interval: dict, window: Window) -> float:
    """Seconds of ``window`` during which the balancer could route to the replica."""
    start = interval["added"] if interval["added"] is not None else -math.inf
    ends = [t for t in (interval["removing"], interval["died"]) if t is not None]
    end = min(ends) if ends else math.inf
    return max(0.0, min(end, window.end) - max(start, window.start))


def fairness(counts: np.ndarray, seconds: np.ndarray) -> dict:
    """Fairness of per-replica request rates; all None when fewer than one replica."""
    if len(counts) == 0 or seconds.sum() <= 0:
        return {"jain": None, "cv": None, "max_mean": None, "chi2_p": None}
    rates = counts / np.maximum(seconds, 1e-9)
    mean = rates.mean()
    if mean == 0:
        return {"jain": 0.0, "cv": None, "max_mean": None, "chi2_p": 0.0}
    jain = float(rates.sum() ** 2 / (len(rates) * (rates ** 2).sum()))
    cv = float(rates.std() / mean)
    max_mean = float(rates.max() / mean)
    if len(counts) > 1 and counts.sum() > 0:
        expected = counts.sum() * seconds / seconds.sum()
        chi2_p = float(stats.chisquare(counts, expected).pvalue)
    else:
        chi2_p = 1.0
    return {"jain": jain, "cv": cv, "max_mean": max_mean, "chi2_p": chi2_p}


def window_distribution(df: pd.DataFrame, window: Window, intervals: dict[str, dict]) -> dict:
    """``df`` holds the records that started inside ``window``."""
    counts = df["hostname"].value_counts(sort=False)
    counts = counts[counts > 0]
    seen = {str(h): int(c) for h, c in counts.items()}
    if intervals:
        up = {h: in_service(iv, window) for h, iv in intervals.items()}
        up = {h: s for h, s in up.items() if s > 0}
    else:  # nothing known of the stack: the replicas are the ones that answered
        up = {h: window.seconds for h in seen}
    names = sorted(up, key=_natural)
    observed = np.array([seen.get(h, 0) for h in names], dtype=float)
    seconds = np.array([up[h] for h in names], dtype=float)
    total = int(sum(seen.values()))
    return {
        "hostnames": {h: seen.get(h, 0) for h in names},
        "share": {h: (seen.get(h, 0) / total if total else 0.0) for h in names},
        "in_service_s": {h: round(up[h], 3) for h in names},
        "fairness": fairness(observed, seconds),
        "uncovered": [h for h in names if seen.get(h, 0) == 0 and up[h] >= 0.5],
        "unexpected_hostnames": sorted(set(seen) - set(up), key=_natural),
    }


def replica_changes(df: pd.DataFrame, stage: dict, intervals: dict[str, dict]) -> dict:
    """Replicas added or removed by this stage's rescale, and how traffic followed."""
    added, removed = [], []
    in_stage = lambda t: t is not None and stage["t_start"] - 1e-6 <= t < stage["t_end"]  # noqa: E731
    for name, iv in intervals.items():
        mine = None
        if in_stage(iv["added"]) or in_stage(iv["removing"]):
            mine = df[df["hostname"] == name]
        if in_stage(iv["added"]):
            first = mine["t_start"].min() if len(mine) else None
            added.append({"hostname": name, "added": iv["added"],
                          "first_request_delay_s": None if first is None or pd.isna(first)
                          else max(0.0, float(first - iv["added"]))})
        if in_stage(iv["removing"]):
            done = iv["removed"] if iv["removed"] is not None else iv["removing"]
            errors = _errors(df)
            around = (df["t_start"] >= iv["removing"] - 1) & (df["t_start"] <= done + 1)
            removed.append({
                "hostname": name,
                "removing": iv["removing"],
                "removed": iv["removed"],
                "served_after_drain_began": int((mine["t_start"] > iv["removing"]).sum()),
                "served_after_removal": int((mine["t_start"] > done).sum()),
                "errors_around": int((errors & around).sum()),
            })
    return {"added": sorted(added, key=lambda a: _natural(a["hostname"])),
            "removed": sorted(removed, key=lambda r: _natural(r["hostname"]))}


def _errors(df: pd.DataFrame) -> pd.Series:
    return (df["status"] == 0) | (df["status"] >= 500)


def _natural(name: str):
    """hello-10 after hello-9."""
    head, _, tail = str(name).rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (str(name), -1)
