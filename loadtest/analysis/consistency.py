"""Did the shared counter stay consistent? A Jepsen-style checker over the records.

Every request is classified as Jepsen does an operation:

- ok: a counter value came back;
- fail: it surely never reached the app (connection refused, or the balancer's
  own "no server available" answer, which carries no replica name);
- unknown: anything else without a value (timeouts, resets, 502/504, a Redis
  error inside the app): it may or may not have incremented.

The checks are pure functions of the table and the counter read before and
after the run; each returns numbers plus a few examples as evidence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXAMPLES = 20
NO_SERVER_STATUSES = (503,)


def classify(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks (ok, fail, unknown), one entry per record."""
    ok = df["counter"].notna().to_numpy()
    status = df["status"].to_numpy()
    refused = (status == 0) & _matches(df["error"], r"ConnectionRefused|Connection refused")
    no_server = np.isin(status, NO_SERVER_STATUSES) & df["hostname"].isna().to_numpy()
    fail = ~ok & (refused | no_server)
    return ok, fail, ~ok & ~fail


def _matches(series: pd.Series, pattern: str) -> np.ndarray:
    """Regex match on a (categorical) string column, evaluated once per distinct value."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = series.cat.categories
        if len(cats) == 0:
            return np.zeros(len(series), dtype=bool)
        hit = np.asarray(pd.Series(cats.astype(str)).str.contains(pattern, regex=True))
        codes = series.cat.codes.to_numpy()
        return np.where(codes >= 0, hit[np.clip(codes, 0, None)], False)
    return series.astype("string").str.contains(pattern, regex=True).fillna(False).to_numpy()


def order_violation_flags(t_start: np.ndarray, t_end: np.ndarray, values: np.ndarray,
                          margin: float = 0.0) -> np.ndarray:
    """Flag b when some a ended (by more than ``margin``) before b started with value >= b's.

    Sort by end time, keep the running maximum of values, and for each b look
    up how many requests had ended before it started: O(n log n).
    """
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(t_end, kind="stable")
    ends = t_end[order]
    running_max = np.maximum.accumulate(values[order])
    ended_before = np.searchsorted(ends, t_start - margin, side="left")
    flags = np.zeros(len(values), dtype=bool)
    has = ended_before > 0
    flags[has] = running_max[ended_before[has] - 1] >= values[has]
    return flags


def check(df: pd.DataFrame, before: int | None, after: int | None,
          clock_skew_ms: float = 10.0) -> dict:
    ok, fail, unknown = classify(df)
    n_ok, n_fail, n_unknown = int(ok.sum()), int(fail.sum()), int(unknown.sum())
    okdf = df.loc[ok, ["t_start", "t_end", "counter", "hostname", "worker", "user"]]
    values = okdf["counter"].to_numpy(dtype=np.int64)
    result: dict = {
        "ok": n_ok, "fail": n_fail, "unknown": n_unknown,
        "counter_before": before, "counter_after": after,
        "duplicates": 0, "unexpected": None, "gaps": 0, "unexplained_gaps": 0,
        "lost": None, "unexplained_increments": None,
        "order_violations": 0, "user_violations": 0,
        "examples": {}, "not_checked": [],
    }
    if n_ok == 0:
        result["not_checked"] = ["duplicates", "gaps", "order", "user_order"]
        _reconcile(result, before, after, n_ok, n_unknown)
        return result

    # Duplicates: a value handed out more than once.
    uniq, counts = np.unique(values, return_counts=True)
    dup_mask = counts > 1
    result["duplicates"] = int((counts[dup_mask] - 1).sum())
    if dup_mask.any():
        top = uniq[dup_mask][:EXAMPLES]
        hosts = okdf[okdf["counter"].isin(top)].groupby("counter", observed=True)["hostname"]
        result["examples"]["duplicates"] = [
            {"value": int(v), "hostnames": sorted(map(str, h.dropna().unique()))}
            for v, h in hosts
        ]

    # Values outside (before, before + ok + unknown].
    if before is not None:
        high = before + n_ok + n_unknown
        outside = (values <= before) | (values > high)
        result["unexpected"] = int(outside.sum())
        if outside.any():
            result["examples"]["unexpected"] = sorted({int(v) for v in values[outside][:EXAMPLES]})
    else:
        result["not_checked"].append("unexpected")

    # Gaps: values never seen between the lowest possible and the highest seen.
    low = before if before is not None else int(uniq[0]) - 1
    in_range = uniq[(uniq > low) & (uniq <= uniq[-1])]
    gaps = int(max(uniq[-1] - low, 0) - len(in_range))
    result["gaps"] = gaps
    result["unexplained_gaps"] = max(0, gaps - n_unknown)

    _reconcile(result, before, after, n_ok, n_unknown)

    # Real-time order. Same worker: one clock, no margin. Across workers: a margin.
    t_start = okdf["t_start"].to_numpy()
    t_end = okdf["t_end"].to_numpy()
    workers = okdf["worker"]
    flags = np.zeros(len(values), dtype=bool)
    worker_codes = workers.cat.codes.to_numpy() if isinstance(
        workers.dtype, pd.CategoricalDtype) else pd.factorize(workers)[0]
    if worker_codes.max(initial=0) > 0:
        flags |= order_violation_flags(t_start, t_end, values, clock_skew_ms / 1000.0)
        for code in np.unique(worker_codes):
            idx = np.flatnonzero(worker_codes == code)
            flags[idx] |= order_violation_flags(t_start[idx], t_end[idx], values[idx])
    else:
        flags = order_violation_flags(t_start, t_end, values)
    result["order_violations"] = int(flags.sum())
    if flags.any():
        sample = okdf[flags].head(EXAMPLES)
        result["examples"]["order"] = [
            {"t_start": float(r.t_start), "value": int(r.counter), "hostname": _s(r.hostname)}
            for r in sample.itertuples()
        ]

    # Per-user monotonicity: one user's requests are sequential; needs no clock sync.
    key = worker_codes.astype(np.int64) * (1 << 32) + okdf["user"].to_numpy(dtype=np.int64)
    order = np.lexsort((t_start, key))
    k, v = key[order], values[order]
    bad = (k[1:] == k[:-1]) & (v[1:] <= v[:-1])
    result["user_violations"] = int(bad.sum())
    result["anomaly_index"] = _anomaly_index(okdf, values, uniq, counts, flags, before,
                                             n_ok, n_unknown)
    return result


def _reconcile(result: dict, before, after, n_ok: int, n_unknown: int) -> None:
    """before + ok <= after <= before + ok + unknown, or say what broke it."""
    if before is None or after is None:
        result["not_checked"].append("reconciliation")
        return
    result["lost"] = max(0, before + n_ok - after)
    result["unexplained_increments"] = max(0, after - (before + n_ok + n_unknown))


def _anomaly_index(okdf, values, uniq, counts, order_flags, before, n_ok, n_unknown) -> dict:
    """Row labels of anomalous records, for the report to mark (capped)."""
    dup_values = uniq[counts > 1]
    dup = np.isin(values, dup_values)
    out = {"duplicate": _spread(okdf.index[dup]), "order": _spread(okdf.index[order_flags])}
    if before is not None:
        outside = (values <= before) | (values > before + n_ok + n_unknown)
        out["unexpected"] = _spread(okdf.index[outside])
    return out


def _spread(labels, cap: int = 5000) -> list:
    """At most ``cap`` labels, evenly spread over the run rather than the first ones."""
    step = max(1, len(labels) // cap)
    return labels[::step][:cap].tolist()


def _s(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
