"""Did the balancer spread requests over the replicas that were up, as its policy should?

The expectation depends on the balancing policy (``--balance-policy``):

- ``roundrobin`` (the default; Traefik's and HAProxy's default): each replica
  gets the same *number* of requests per second in service;
- ``leastconn``: each replica is kept equally *busy* (sum of latencies per
  second in service): a slower replica rightly gets fewer requests;
- ``weights:NAME=W,...``: each replica gets requests in proportion to its
  weight (replicas not named weigh 1).

Counts are normalised by the time each replica was in service inside the
window, so a replica that joined mid-window is not called starved. The
fairness figures (Jain's index, coefficient of variation, max/mean, and a
chi-square p-value against the expected split) are computed on the
normalised quantity the policy balances.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import chdtrc  # for chi-square: scipy.stats alone takes 1.8 s to import

from loadtest.analysis.passes import Accumulator
from loadtest.analysis.windows import Window, in_service, natural

POLICIES = ("roundrobin", "leastconn", "weights")


class BalanceError(ValueError):
    pass


def parse_balance(text: str) -> tuple[str, dict[str, float]]:
    """``roundrobin`` | ``leastconn`` | ``weights:NAME=W,...`` → (policy, weights)."""
    text = (text or "roundrobin").strip()
    if text in ("roundrobin", "leastconn"):
        return text, {}
    if text.startswith("weights:"):
        weights = {}
        for part in text[len("weights:"):].split(","):
            name, sep, value = part.partition("=")
            try:
                weight = float(value)
            except ValueError:
                weight = -1.0
            if not sep or not name.strip() or weight <= 0 or not math.isfinite(weight):
                raise BalanceError(f"--balance-policy {text!r}: expected weights:NAME=W,... with "
                                   "W > 0")
            weights[name.strip()] = weight
        return "weights", weights
    raise BalanceError(f"--balance-policy {text!r}: choose roundrobin, leastconn or "
                       "weights:NAME=W,...")


def fairness(observed: np.ndarray, seconds: np.ndarray,
             expected_share: np.ndarray | None = None) -> dict:
    """Fairness of per-replica rates (``observed`` per second in service), against an
    even split or ``expected_share``; all None with no replica."""
    if len(observed) == 0 or seconds.sum() <= 0:
        return {"jain": None, "cv": None, "max_mean": None, "chi2_p": None}
    weight = expected_share if expected_share is not None else np.ones(len(observed))
    rates = observed / np.maximum(seconds, 1e-9) / np.maximum(weight, 1e-12)
    mean = rates.mean()
    if mean == 0:  # no request named a replica: nothing to judge, not an unfair split
        return {"jain": None, "cv": None, "max_mean": None, "chi2_p": None}
    jain = float(rates.sum() ** 2 / (len(rates) * (rates ** 2).sum()))
    cv = float(rates.std() / mean)
    max_mean = float(rates.max() / mean)
    if len(observed) > 1 and observed.sum() > 0:
        share = seconds * weight
        expected = observed.sum() * share / share.sum()
        # Pearson's chi-square against the expected split.
        statistic = float((((observed - expected) ** 2) / expected).sum())
        chi2_p = float(chdtrc(len(observed) - 1, statistic))
    else:
        chi2_p = 1.0
    return {"jain": jain, "cv": cv, "max_mean": max_mean, "chi2_p": chi2_p}


def window_distribution(per_replica: dict[str, dict], window: Window,
                        intervals: dict[str, dict], policy: str = "roundrobin",
                        weights: dict[str, float] | None = None,
                        expected_hosts: list[str] | None = None) -> dict:
    """How the requests that started inside ``window`` spread, judged by ``policy``.

    ``per_replica``: hostname -> {requests, busy_s, ...} (from ``throughput.Slice``).
    ``expected_hosts``: the replicas in service (segments know them); else from the
    stack's events; else whoever answered (a stack the harness does not control).
    """
    seen = {h: v["requests"] for h, v in per_replica.items()}
    if expected_hosts is not None:
        up = {h: window.seconds for h in expected_hosts}
    elif intervals:
        up = {h: in_service(iv, window) for h, iv in intervals.items()}
        up = {h: s for h, s in up.items() if s > 0}
    else:
        up = {h: window.seconds for h in seen}
    names = sorted(up, key=natural)
    requests = np.array([seen.get(h, 0) for h in names], dtype=float)
    busy = np.array([per_replica.get(h, {}).get("busy_s", 0.0) for h in names], dtype=float)
    seconds = np.array([up[h] for h in names], dtype=float)
    share = None
    if policy == "weights":
        w = np.array([(weights or {}).get(h, 1.0) for h in names], dtype=float)
        share = w / w.sum() if len(w) else None
    balanced = busy if policy == "leastconn" else requests
    total = int(requests.sum())
    return {
        "policy": policy,
        "hostnames": {h: seen.get(h, 0) for h in names},
        "share": {h: (seen.get(h, 0) / total if total else 0.0) for h in names},
        "in_service_s": {h: round(up[h], 3) for h in names},
        "fairness": fairness(balanced, seconds, share),
        "judged_on": "busy time" if policy == "leastconn" else "requests",
        "uncovered": [h for h in names if seen.get(h, 0) == 0 and up[h] >= 0.5],
        "unexpected_hostnames": sorted(set(seen) - set(up), key=natural),
    }


class ReplicaChanges(Accumulator):
    """Replicas that joined or left during a time range, and how traffic followed them."""

    def __init__(self, start: float, end: float, intervals: dict[str, dict]) -> None:
        inside = lambda t: t is not None and start - 1e-6 <= t < end  # noqa: E731
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
        self.died = {h: {"hostname": h, "died": iv["died"], "served_after_death": 0}
                     for h, iv in intervals.items() if inside(iv["died"])}

    def add(self, chunk) -> None:
        """Only the rows inside its range are looked at."""
        if not (self.added or self.removed or self.died) or len(chunk.t_start) == 0:
            return
        t = chunk.t_start
        names = chunk.host_names
        for name, entry in self.added.items():
            if name in names:
                mine = t[chunk.host_codes == names.index(name)]
                if len(mine):
                    first = float(mine.min())
                    entry["first"] = first if entry["first"] is None else min(entry["first"],
                                                                                first)
        for name, entry in self.removed.items():
            if name in names:
                mine = t[chunk.host_codes == names.index(name)]
                entry["served_after_drain_began"] += int((mine > entry["removing"]).sum())
                entry["served_after_removal"] += int((mine > entry["_done"]).sum())
            around = (t >= entry["removing"] - 1) & (t <= entry["_done"] + 1)
            entry["errors_around"] += int((chunk.err & around).sum())
        for name, entry in self.died.items():
            if name in names:
                mine = t[chunk.host_codes == names.index(name)]
                entry["served_after_death"] += int((mine > entry["died"] + 0.5).sum())

    def result(self) -> dict:
        added = [{"hostname": e["hostname"], "added": e["added"],
                  "first_request_delay_s": None if e["first"] is None
                  else max(0.0, e["first"] - e["added"])} for e in self.added.values()]
        removed = [{k: v for k, v in e.items() if not k.startswith("_")}
                   for e in self.removed.values()]
        return {"added": sorted(added, key=lambda a: natural(a["hostname"])),
                "removed": sorted(removed, key=lambda r: natural(r["hostname"])),
                "died": sorted(self.died.values(), key=lambda r: natural(r["hostname"]))}
