"""Throughput, latency and errors: per stage, around each scale change, and over time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from loadtest.analysis.consistency import _matches
from loadtest.analysis.windows import Window

PERCENTILES = (50, 90, 95, 99)


def error_mask(df: pd.DataFrame) -> np.ndarray:
    status = df["status"].to_numpy()
    return (status == 0) | (status >= 400)


def error_kinds(df: pd.DataFrame) -> dict[str, int]:
    """Errors by kind: http_<status>, timeout, connection."""
    mask = error_mask(df)
    if not mask.any():
        return {}
    errs = df.loc[mask, ["status", "error"]]
    timeout = _matches(errs["error"], r"(?i)timeout|timed out")
    status = errs["status"].to_numpy()
    kinds = np.where(status > 0, np.char.add("http_", status.astype(str)),
                     np.where(timeout, "timeout", "connection"))
    values, counts = np.unique(kinds, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def window_stats(df: pd.DataFrame, window: Window) -> dict:
    """``df`` holds the records that started inside ``window``."""
    n = len(df)
    latency = df["latency_ms"].to_numpy()
    if n:
        pcts = np.percentile(latency, PERCENTILES)
        lat = {f"p{p}": float(v) for p, v in zip(PERCENTILES, pcts)}
        lat["max"] = float(latency.max())
        lat["mean"] = float(latency.mean())
    else:
        lat = {f"p{p}": None for p in PERCENTILES} | {"max": None, "mean": None}
    errors = int(error_mask(df).sum()) if n else 0
    return {
        "requests": n,
        "seconds": round(window.seconds, 3),
        "rps": n / window.seconds,
        "error_rate": errors / n if n else 0.0,
        "errors": errors,
        "errors_by_kind": error_kinds(df) if errors else {},
        "latency_ms": lat,
    }


def scaling_efficiency(stages: list[dict]) -> None:
    """rps(level) / (level / first_level × rps(first)), in place; None without a base."""
    base = next((s for s in stages if s["level"] and s["rps"]), None)
    for stage in stages:
        if base is None or not stage["level"]:
            stage["scaling_efficiency"] = None
        else:
            ideal = stage["level"] / base["level"] * base["rps"]
            stage["scaling_efficiency"] = stage["rps"] / ideal if ideal else None


def timeline(df: pd.DataFrame, t0: float, top: int = 12) -> dict:
    """Completed requests per 1 s bucket: total, errors, and per hostname (largest ``top``)."""
    t_end = df["t_end"].to_numpy()
    bucket = np.floor(t_end - t0).astype(np.int64)
    bucket = np.clip(bucket, 0, None)
    n = int(bucket.max()) + 1 if len(bucket) else 0
    total = np.bincount(bucket, minlength=n)
    errors = np.bincount(bucket[error_mask(df)], minlength=n)
    hosts = df["hostname"]
    if not isinstance(hosts.dtype, pd.CategoricalDtype):
        hosts = hosts.astype("category")
    codes = hosts.cat.codes.to_numpy().astype(np.int64)
    cats = [str(c) for c in hosts.cat.categories]
    per_host = {}
    if cats:
        valid = codes >= 0
        grid = np.bincount(codes[valid] * n + bucket[valid], minlength=len(cats) * n)
        grid = grid.reshape(len(cats), n)
        order = np.argsort(-grid.sum(axis=1))[:top]
        per_host = {cats[i]: grid[i].tolist() for i in order if grid[i].sum() > 0}
    return {"t0": t0, "seconds": n, "total": total.tolist(), "errors": errors.tolist(),
            "per_hostname": per_host}
