"""A run against a baseline, with confidence: is a difference a regression, or noise?

For each replica count in both runs, requests/s, p50 and p99 are compared
second by second (``per_second`` of each level, see ``buckets``):

- the statistic: requests/s is the mean of the per-second counts; p50 and p99
  are the per-second percentiles averaged over the seconds, weighted by their
  requests (a second with 10 requests says less than one with 1,000);
- the change: this run's statistic over the baseline's, minus 1;
- its 95 % confidence interval: a circular block bootstrap over the 1 s buckets
  of each run, resampled independently (blocks of about n^(1/3) seconds keep
  what neighbouring seconds share, e.g. a slow stretch), percentile interval,
  seeded so the same two runs always give the same interval.

A regression is called only when the whole interval is beyond the threshold
(``max_rps_drop``, ``max_p50_increase``, ``max_p99_increase``: the size of
change that matters). A change whose estimate is within the threshold passes
(there is no evidence of a regression; when its interval reaches beyond, the
detail says what could not be excluded). A change whose estimate is beyond the
threshold but whose interval reaches back within it is *not checked*: it looks
like a regression that cannot be told from noise at this length, and neither a
pass nor a fail would be as confident as the evidence. So is a replica count
held for fewer than ``MIN_SECONDS`` whole seconds on either side (a ratio of a
few seconds is noise). A baseline without per-second data (an older
summary.json) falls back to the plain ratio and says so.

The interval measures the noise within the two runs, not the drift between two
machines or two moments of a shared one: the thresholds are the guard against
that, so keep them above what ``benchmarks/ci.py`` measures on your runners.
"""

from __future__ import annotations

import math

import numpy as np

from loadtest.analysis.checks import Check, at_most, checker, judged
from loadtest.analysis.findings import Findings
from loadtest.analysis.thresholds import Thresholds

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 1843  # fixed: the same two runs give the same interval (grafana/k6#1843, for luck)
MIN_SECONDS = 5
#: (metric, key of the per-second data, key of latency_ms, what it is)
METRICS = (("rps", "requests", None, "requests/s"),
           ("p50", "p50_ms", "p50", "p50"),
           ("p99", "p99_ms", "p99", "p99"))


def block_indices(n: int, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """Indices of ``resamples`` circular block-bootstrap samples of ``n`` buckets."""
    length = max(1, round(n ** (1 / 3)))
    blocks = math.ceil(n / length)
    starts = rng.integers(0, n, size=(resamples, blocks))
    idx = (starts[:, :, None] + np.arange(length)[None, None, :]) % n
    return idx.reshape(resamples, blocks * length)[:, :n]


def _arrays(per_second: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    weights = np.asarray(per_second.get("requests") or [], dtype=float)
    values = {"requests": weights}
    for key in ("p50_ms", "p99_ms"):
        raw = per_second.get(key) or [None] * len(weights)
        values[key] = np.array([0.0 if v is None else float(v) for v in raw])
    return weights, values


def _statistic(key: str, weights: np.ndarray, values: np.ndarray,
               idx: np.ndarray | None = None) -> np.ndarray | float:
    """The metric over all seconds (idx None) or over each resample (rows of idx)."""
    if idx is None:
        idx = np.arange(len(weights))[None, :]
        scalar = True
    else:
        scalar = False
    w = weights[idx]
    if key == "requests":
        out = w.mean(axis=1)
    else:
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(total > 0, (values[idx] * w).sum(axis=1) / total, np.nan)
    return float(out[0]) if scalar else out


def change_ci(base: dict, new: dict, key: str, seed: int = SEED,
              resamples: int = RESAMPLES) -> dict | None:
    """The relative change new/base - 1 of one metric, with its bootstrap interval, or
    None when either side has too few seconds (or nothing to divide by)."""
    wb, vb = _arrays(base)
    wn, vn = _arrays(new)
    if min((wb > 0).sum(), (wn > 0).sum()) < MIN_SECONDS:
        return None
    old = _statistic(key, wb, vb[key])
    cur = _statistic(key, wn, vn[key])
    if not old or not math.isfinite(old) or not math.isfinite(cur):
        return None
    rng = np.random.default_rng(seed)
    ib = block_indices(len(wb), rng, resamples)
    inew = block_indices(len(wn), rng, resamples)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = _statistic(key, wn, vn[key], inew) / _statistic(key, wb, vb[key], ib) - 1
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) < resamples // 2:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return {"change": cur / old - 1, "low": float(low), "high": float(high),
            "baseline": old, "this_run": cur, "seconds": [len(wb), len(wn)],
            "confidence": CONFIDENCE, "resamples": resamples, "seed": seed,
            "block_s": max(1, round(len(wn) ** (1 / 3)))}


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}"


def finding(metric: str, level: int, ci: dict | None, change: float) -> str:
    """e.g. ``p99 at 3 replicas +38 % (95 % CI +20…+55 %)``."""
    what = {"rps": "req/s"}.get(metric, metric)
    where = f"{level} replica" + ("" if level == 1 else "s") if level else "the observed stack"
    text = f"{what} at {where} {_pct(change)} %"
    if ci is not None:
        text += f" ({ci['confidence'] * 100:.0f} % CI {_pct(ci['low'])}…{_pct(ci['high'])} %)"
    return text


def compare_levels(levels: list[dict], baseline_levels: list[dict]) -> list[dict]:
    """For each replica count in both: each metric's change, its interval when the data
    allow one, and why not otherwise. Plain data, for checks and reports alike."""
    base = {lv.get("level"): lv for lv in baseline_levels}
    out = []
    for level in levels:
        old = base.get(level["level"])
        if old is None or not old.get("rps"):
            continue
        row = {"level": level["level"], "metrics": {}}
        for metric, key, lat_key, _what in METRICS:
            plain_old = old["rps"] if lat_key is None else (old.get("latency_ms") or {}).get(
                lat_key)
            plain_new = level["rps"] if lat_key is None else level["latency_ms"].get(lat_key)
            plain = None if not plain_old or plain_new is None else plain_new / plain_old - 1
            entry = {"plain_change": plain, "baseline": plain_old, "this_run": plain_new,
                     "ci": None, "why_no_ci": ""}
            if not old.get("per_second"):
                entry["why_no_ci"] = ("the baseline has no per-second data (analysed by an "
                                      "older version): plain ratio, no confidence interval")
            elif not level.get("per_second"):
                entry["why_no_ci"] = "this run has no per-second data: plain ratio"
            else:
                ci = change_ci(old["per_second"], level["per_second"], key,
                               seed=SEED + 1000 * int(level["level"] or 0))
                if ci is None:
                    n = [sum(1 for r in lv["per_second"].get("requests") or [] if r)
                         for lv in (old, level)]
                    entry["why_no_ci"] = (f"too few seconds with requests ({n[0]} in the "
                                          f"baseline, {n[1]} here; {MIN_SECONDS} needed) for a "
                                          "confidence interval")
                    entry["too_short"] = True
                entry["ci"] = ci
            row["metrics"][metric] = entry
        out.append(row)
    return out


def _limit(metric: str, t: Thresholds) -> float | None:
    return {"rps": t.max_rps_drop, "p50": t.max_p50_increase,
            "p99": t.max_p99_increase}[metric]


def regression_checks(levels: list[dict], baseline: dict, t: Thresholds) -> list[Check]:
    """Per replica count in both runs: req/s must not drop, p50 and p99 must not rise, by
    more than the thresholds, beyond the noise (see the module's docstring)."""
    base_levels = baseline.get("levels") or baseline.get("stages") or []
    rows = compare_levels(levels, base_levels)
    if not rows:
        return [judged("regression", None, None, None,
                      "req/s and latency per replica count against the baseline",
                      {"levels": [lv["level"] for lv in levels],
                       "baseline_levels": sorted(lv.get("level") for lv in base_levels)},
                      reason="no replica count in common with the baseline: nothing compared")]
    out = []
    for row in rows:
        for metric, _key, _lat, what in METRICS:
            limit = _limit(metric, t)
            entry = row["metrics"][metric]
            if limit is None or entry["plain_change"] is None:
                continue
            out.append(_check(metric, what, row["level"], entry, limit))
    return out


def _check(metric: str, what: str, level: int, entry: dict, limit: float) -> Check:
    name = f"regression_{metric}_level_{level}"
    sign = -1 if metric == "rps" else 1  # the value is a drop for req/s, a rise otherwise
    unit = "" if metric == "rps" else " ms"
    old, new = entry["baseline"], entry["this_run"]
    ci = entry["ci"]
    if ci is None and entry.get("too_short"):  # a ratio of a few seconds is noise
        return judged(name, None, round(sign * entry["plain_change"], 4), limit,
                     f"relative {'drop' if sign < 0 else 'rise'} of {what} ({old:.1f} -> "
                     f"{new:.1f}{unit})",
                     {"finding": finding(metric, level, None, entry["plain_change"]),
                      "ci": None, "why_no_ci": entry["why_no_ci"]},
                     reason=entry["why_no_ci"] + ": hold each replica count longer")
    if ci is None:
        value = round(sign * entry["plain_change"], 4)
        detail = (f"relative {'drop' if sign < 0 else 'rise'} of {what} ({old:.1f} -> "
                  f"{new:.1f}{unit}); {entry['why_no_ci']}")
        check = at_most(name, value, limit, detail)
        check.evidence = {"finding": finding(metric, level, None, entry["plain_change"]),
                          "ci": None, "why_no_ci": entry["why_no_ci"]}
        return check
    lo, hi = sorted((sign * ci["low"], sign * ci["high"]))
    value = round(sign * ci["change"], 4)
    text = finding(metric, level, ci, ci["change"])
    stat = "mean requests per second" if metric == "rps" else \
        f"per-second {what}, averaged over the seconds weighted by requests"
    detail = (f"relative {'drop' if sign < 0 else 'rise'} of {what} against the baseline: "
              f"{text}; {stat}, {ci['confidence'] * 100:.0f} % block-bootstrap interval over "
              f"{ci['seconds'][0]} and {ci['seconds'][1]} s; a regression only when the whole "
              f"interval is beyond {limit:g} (whole-run {what}: {old:.1f} -> {new:.1f}{unit})")
    evidence = {"finding": text, "ci": [round(lo, 4), round(hi, 4)],
                "change": round(ci["change"], 4), "seconds": ci["seconds"],
                "resamples": ci["resamples"], "seed": ci["seed"], "block_s": ci["block_s"]}
    if lo > limit:  # the whole interval beyond: a regression
        return judged(name, False, value, limit, detail, evidence)
    if value <= limit:  # no evidence of a regression, and the best estimate is within
        if hi > limit:
            detail += (f"; the interval reaches {hi:+.2f}: a regression of that size cannot "
                       "be excluded at this length")
        return judged(name, True, value, limit, detail, evidence)
    return judged(name, None, value, limit, detail, evidence,
                 reason=f"{value:+.2f} is beyond the threshold {limit:g} but its "
                        f"{ci['confidence'] * 100:.0f} % interval ({lo:+.2f} to {hi:+.2f}) "
                        "reaches within it: it cannot be told from noise at this length; "
                        "run longer")


__all__ = ["change_ci", "compare_levels", "finding", "regression_checks"]


@checker("regression")
def baseline_checks(f: Findings, t: Thresholds) -> list[Check]:
    """Against ``--baseline``: each replica count's req/s and latency, with confidence."""
    return [] if f.baseline is None else regression_checks(f.levels, f.baseline, t)
