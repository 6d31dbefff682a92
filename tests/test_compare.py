"""A baseline compared with confidence: per-second buckets, the block bootstrap, the checks.

Pure functions on data made here (no process is started): per-second buckets are
checked against numpy's own percentiles on a synthetic history; the comparison on
per-second series drawn from known distributions, where the truth is known.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from loadtest.analysis.buckets import PerSecond, bucket_quantiles
from loadtest.analysis.compare import (
    MIN_SECONDS,
    block_indices,
    change_ci,
    compare_levels,
    regression_checks,
)
from loadtest.analysis.passes import Chunk
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.windows import Window
from loadtest.contract.synth import SynthSpec, generate


def _frame(requests: int = 12_000, seed: int = 5) -> pd.DataFrame:
    _meta, cols = generate(SynthSpec(requests, [1, 2], seed=seed))
    df = pd.DataFrame(cols)
    df["hostname"] = df["hostname"].astype("category")
    return df.sort_values("t_start", kind="stable", ignore_index=True)


def _chunks(df: pd.DataFrame, parts: int) -> list[Chunk]:
    edges = np.linspace(0, len(df), parts + 1).astype(int)
    return [Chunk.of(df.iloc[a:b].reset_index(drop=True)) for a, b in zip(edges, edges[1:])]


def test_bucket_quantiles_match_numpy():
    rng = np.random.default_rng(1)
    bucket = np.sort(rng.integers(0, 7, 500))
    latency = rng.exponential(5.0, 500)
    ids, counts, (p50, p99) = bucket_quantiles(bucket, latency)
    for i, n, a, b in zip(ids, counts, p50, p99):
        mine = latency[bucket == i]
        assert n == len(mine)
        assert a == pytest.approx(np.percentile(mine, 50))
        assert b == pytest.approx(np.percentile(mine, 99))


def test_per_second_is_exact_whole_seconds_and_the_same_however_chunked():
    df = _frame()
    t0 = float(df["t_start"].min())
    # Two windows, as a level made of two segments; neither a whole number of seconds.
    windows = [Window("a", t0 + 0.3, t0 + 5.8, 1), Window("b", t0 + 9.1, t0 + 12.6, 1)]
    results = []
    for parts in (1, 7, 40):  # a bucket split across chunks must come out whole
        acc = PerSecond(windows, t0)
        for chunk in _chunks(df, parts):
            acc.add(chunk)
        results.append(acc.result())
    assert results[0] == results[1] == results[2]
    got = results[0]
    assert got["t"] == [0.3, 1.3, 2.3, 3.3, 4.3, 9.1, 10.1, 11.1]  # tails < 1 s left out
    t, lat = df["t_start"].to_numpy(), df["latency_ms"].to_numpy()
    for start, n, p50, p99 in zip(got["t"], got["requests"], got["p50_ms"], got["p99_ms"]):
        mine = lat[(t >= t0 + start) & (t < t0 + start + 1)]
        assert n == len(mine) > 0
        assert p50 == pytest.approx(np.percentile(mine, 50), abs=1e-4)
        assert p99 == pytest.approx(np.percentile(mine, 99), abs=1e-4)


def test_a_second_without_requests_counts_zero_with_no_percentiles():
    df = _frame(2_000)
    t_end = float(df["t_start"].max())
    acc = PerSecond(Window("w", t_end + 0.5, t_end + 2.7, 1), 0.0)  # after the last request
    for chunk in _chunks(df, 3):
        acc.add(chunk)
    got = acc.result()
    assert got["requests"] == [0, 0] and got["p99_ms"] == [None, None]


def _series(seconds: int, rps: float, p50: float, p99: float, seed: int,
            noise: float = 0.05) -> dict:
    rng = np.random.default_rng(seed)
    return {"t": list(range(seconds)),
            "requests": rng.poisson(rps, seconds).tolist(),
            "p50_ms": (p50 * (1 + noise * rng.standard_normal(seconds))).tolist(),
            "p99_ms": (p99 * (1 + 2 * noise * rng.standard_normal(seconds))).tolist()}


def _level(level: int, per_second: dict) -> dict:
    req = np.array(per_second["requests"], dtype=float)
    return {"level": level, "rps": float(req.mean()),
            "latency_ms": {"p50": float(np.mean(per_second["p50_ms"])),
                           "p99": float(np.mean(per_second["p99_ms"]))},
            "per_second": per_second}


def test_block_bootstrap_is_seeded_and_keeps_blocks():
    a = block_indices(27, np.random.default_rng(3), 50)
    b = block_indices(27, np.random.default_rng(3), 50)
    assert a.shape == (50, 27) and (a == b).all()
    # Blocks of 3 consecutive seconds (27 ** (1/3)), wrapping around the end.
    assert ((a[:, 1:3] - a[:, 0:2]) % 27 == 1).all()


def test_the_same_runs_give_the_same_interval():
    base, new = _series(30, 400, 10, 30, 1), _series(30, 380, 11, 33, 2)
    assert change_ci(base, new, "p99_ms") == change_ci(base, new, "p99_ms")
    assert change_ci(base, new, "p99_ms", seed=7) != change_ci(base, new, "p99_ms")


@pytest.mark.parametrize("seed", range(5))
def test_noise_alone_is_no_regression(seed):
    base = _level(3, _series(20, 400, 10, 30, seed))
    new = _level(3, _series(20, 400, 10, 30, seed + 100))
    checks = regression_checks([new], {"levels": [base]}, Thresholds())
    assert {c.name for c in checks} == {"regression_rps_level_3", "regression_p50_level_3",
                                        "regression_p99_level_3"}
    assert all(c.passed is True for c in checks), [(c.name, c.evidence) for c in checks]
    for c in checks:
        low, high = c.evidence["ci"]
        assert low <= c.value <= high


def test_twice_as_slow_is_a_regression_with_its_interval():
    base = _level(3, _series(20, 400, 10, 30, 1))
    new = _level(3, _series(20, 200, 20, 60, 2))
    checks = {c.name: c for c in regression_checks([new], {"levels": [base]}, Thresholds())}
    p99 = checks["regression_p99_level_3"]
    assert p99.passed is False
    assert p99.evidence["ci"][0] > Thresholds().max_p99_increase  # the whole interval beyond
    assert re.fullmatch(r"p99 at 3 replicas \+\d+ % \(95 % CI \+\d+…\+\d+ %\)",
                        p99.evidence["finding"]), p99.evidence["finding"]
    assert 0.8 < p99.value < 1.2
    rps = checks["regression_rps_level_3"]
    assert rps.passed is False and 0.4 < rps.value < 0.6  # a drop, as before
    assert rps.evidence["finding"].startswith("req/s at 3 replicas -5")


def _p99_check(new_p99: float, noise: float):
    base = _level(2, _series(12, 400, 10, 30, 1, noise=noise))
    new = _level(2, _series(12, 400, 10, new_p99, 2, noise=noise))
    return next(c for c in regression_checks([new], {"levels": [base]}, Thresholds())
                if c.name == "regression_p99_level_2")


def test_a_rise_beyond_the_threshold_but_within_the_noise_is_not_checked():
    check = _p99_check(50, noise=0.3)  # about +67 %, very noisy
    low, high = check.evidence["ci"]
    assert low < 0.5 < check.value < high
    assert check.passed is None and "cannot be told from noise" in check.reason


def test_a_rise_within_the_threshold_passes_and_says_what_it_cannot_exclude():
    check = _p99_check(39, noise=0.3)  # about +30 %
    low, high = check.evidence["ci"]
    assert low < check.value < 0.5 < high
    assert check.passed is True and "cannot be excluded" in check.detail


def test_a_baseline_without_per_second_data_falls_back_to_the_ratio_and_says_so():
    base = _level(1, _series(20, 400, 10, 30, 1))
    del base["per_second"]
    new = _level(1, _series(20, 200, 10, 30, 2))
    checks = {c.name: c for c in regression_checks([new], {"levels": [base]}, Thresholds())}
    rps = checks["regression_rps_level_1"]
    assert rps.passed is False and rps.evidence["ci"] is None
    assert rps.value == pytest.approx(1 - new["rps"] / base["rps"], abs=1e-4)
    assert "no per-second data" in rps.detail
    assert checks["regression_p99_level_1"].passed is True


def test_too_few_seconds_are_not_checked():
    base = _level(1, _series(MIN_SECONDS - 1, 400, 10, 30, 1))
    new = _level(1, _series(20, 200, 10, 30, 2))
    row = compare_levels([new], [base])[0]
    assert row["metrics"]["p99"]["ci"] is None
    assert "too few seconds" in row["metrics"]["p99"]["why_no_ci"]
    checks = regression_checks([new], {"levels": [base]}, Thresholds())
    assert all(c.passed is None and "too few seconds" in c.reason for c in checks)


def test_nothing_in_common_is_not_checked():
    base = _level(1, _series(20, 400, 10, 30, 1))
    new = _level(4, _series(20, 400, 10, 30, 2))
    (check,) = regression_checks([new], {"levels": [base]}, Thresholds())
    assert check.name == "regression" and check.passed is None


def test_p50_threshold_can_be_off():
    base = _level(1, _series(20, 400, 10, 30, 1))
    new = _level(1, _series(20, 400, 30, 30, 2))
    t = Thresholds(max_p50_increase=None)
    assert "regression_p50_level_1" not in {c.name for c in regression_checks(
        [new], {"levels": [base]}, t)}
