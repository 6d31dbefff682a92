"""Did the balancer spread requests evenly over the replicas that were up?

Counts are normalised by the time each replica was in service inside the
window, so a replica that joined mid-window is not called starved. The
fairness figures (Jain's index, coefficient of variation, max/mean, and a
chi-square p-value against an even split) are computed on those rates.
"""

from __future__ import annotations

import math
from collections import Counter

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


def count_hostnames(df: pd.DataFrame) -> Counter:
    counts = df["hostname"].value_counts(sort=False)
    return Counter({str(h): int(c) for h, c in counts.items() if c > 0})


def window_distribution(seen: Counter, window: Window, intervals: dict[str, dict]) -> dict:
    """How the requests that started inside ``window`` (counted per hostname) spread."""
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


class ReplicaChanges:
    """Replicas added or removed by one stage's rescale, and how traffic followed them."""

    def __init__(self, stage: dict, intervals: dict[str, dict]) -> None:
        inside = lambda t: t is not None and stage["t_start"] - 1e-6 <= t < stage["t_end"]  # noqa: E731
        self.added = {h: {"hostname": h, "added": iv["added"], "first": None}
                      for h, iv in intervals.items() if inside(iv["added"])}
        self.removed = {}
        for h, iv in intervals.items():
            if inside(iv["removing"]):
                done = iv["removed"] if iv["removed"] is not None else iv["removing"]
                self.removed[h] = {"hostname": h, "removing": iv["removing"],
                                   "removed": iv["removed"], "_done": done,
                                   "served_after_drain_began": 0, "served_after_removal": 0,
                                   "errors_around": 0}

    def add(self, df: pd.DataFrame) -> None:
        """``df``: records that started inside the stage."""
        if not (self.added or self.removed) or len(df) == 0:
            return
        hosts = df["hostname"].astype(object).to_numpy()
        t = df["t_start"].to_numpy()
        for name, entry in self.added.items():
            mine = t[hosts == name]
            if len(mine):
                first = float(mine.min())
                entry["first"] = first if entry["first"] is None else min(entry["first"], first)
        if self.removed:
            errors = (df["status"] == 0).to_numpy() | (df["status"] >= 500).to_numpy()
            for name, entry in self.removed.items():
                mine = t[hosts == name]
                entry["served_after_drain_began"] += int((mine > entry["removing"]).sum())
                entry["served_after_removal"] += int((mine > entry["_done"]).sum())
                around = (t >= entry["removing"] - 1) & (t <= entry["_done"] + 1)
                entry["errors_around"] += int((errors & around).sum())

    def result(self) -> dict:
        added = [{"hostname": e["hostname"], "added": e["added"],
                  "first_request_delay_s": None if e["first"] is None
                  else max(0.0, e["first"] - e["added"])} for e in self.added.values()]
        removed = [{k: v for k, v in e.items() if not k.startswith("_")}
                   for e in self.removed.values()]
        return {"added": sorted(added, key=lambda a: _natural(a["hostname"])),
                "removed": sorted(removed, key=lambda r: _natural(r["hostname"]))}


def _natural(name: str):
    """hello-10 after hello-9."""
    head, _, tail = str(name).rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (str(name), -1)
