"""Capacity within the SLO, the Universal Scalability Law and the plain answer: pure
functions over summary levels, against curves with known coefficients and against a real
summary of the analyzer (a synthetic history)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loadtest.analysis.capacity import (
    capacity_findings,
    capacity_within_slo,
    fit_usl,
    replicas_for,
    usl,
)
from loadtest.analysis.load import load_run
from loadtest.analysis.summary import analyse
from loadtest.analysis.thresholds import Thresholds
from loadtest.contract.synth import SynthSpec, generate, write


def levels_of(points, p95=None, errors=0.0):
    """Summary levels for (replicas, req/s) pairs; p95 per level from ``p95(n)``."""
    return [{"level": n, "rps": rps, "requests": int(rps * 20) if rps == rps else 0,
             "seconds": 20.0, "error_rate": errors,
             "latency_ms": {"p50": 5.0, "p90": 8.0, "p95": p95(n) if p95 else 10.0,
                            "p99": 20.0}}
            for n, rps in points]


def curve(sigma, kappa, lam, counts=(1, 2, 4, 8, 16), noise=0.0, seed=1):
    rng = np.random.default_rng(seed)
    return [(n, float(usl(n, sigma, kappa, lam)) * (1 + noise * rng.standard_normal()))
            for n in counts]


def test_usl_recovers_known_coefficients_and_the_peak():
    fit = fit_usl(levels_of(curve(0.05, 0.002, 200.0)))
    assert fit["fitted"] and not fit["exact"] and fit["r2"] == pytest.approx(1.0)
    assert fit["sigma"] == pytest.approx(0.05, rel=1e-3)
    assert fit["kappa"] == pytest.approx(0.002, rel=1e-3)
    assert fit["lambda"] == pytest.approx(200.0, rel=1e-3)
    # N* = sqrt((1 - 0.05) / 0.002) = 21.79; X(N*) from the law itself
    assert fit["peak_replicas"] == pytest.approx(math.sqrt(0.95 / 0.002), rel=1e-3)
    assert fit["peak_rps"] == pytest.approx(float(usl(math.sqrt(475), 0.05, 0.002, 200)),
                                            rel=1e-3)


def test_usl_with_two_percent_noise_stays_close():
    fit = fit_usl(levels_of(curve(0.1, 0.01, 500.0, counts=(1, 2, 3, 4, 6, 8), noise=0.02)))
    assert fit["fitted"] and fit["r2"] > 0.95
    assert fit["sigma"] == pytest.approx(0.1, abs=0.05)
    assert fit["peak_replicas"] == pytest.approx(math.sqrt(0.9 / 0.01), rel=0.25)


def test_linear_scaling_has_no_peak():
    fit = fit_usl(levels_of([(1, 100.0), (2, 200.0), (4, 400.0)]))
    assert fit["fitted"] and fit["exact"]  # three counts, three coefficients
    assert fit["sigma"] == pytest.approx(0, abs=1e-5)
    assert fit["kappa"] == pytest.approx(0, abs=1e-5)
    assert fit["peak_replicas"] > 400  # a hundred times beyond what was measured, or none


@pytest.mark.parametrize("points,why", [
    ([(1, 100.0), (2, 190.0)], "needs at least 3"),
    ([(1, 100.0), (1, 101.0), (2, 190.0)], "needs at least 3"),   # two distinct counts
    ([(1, 100.0), (0, 50.0), (2, 180.0), (4, float("nan"))], "needs at least 3"),
])
def test_usl_not_fitted_under_three_replica_counts(points, why):
    fit = fit_usl(levels_of(points))
    assert not fit["fitted"] and why in fit["reason"] and fit["sigma"] is None


def test_usl_not_fitted_when_throughput_does_not_follow_it():
    """Issue 18's sweep on one machine: 2,186 -> 2,199 -> 2,205 req/s, more counts added
    with the same noise: the replicas were never the bottleneck; the law explains little."""
    flat = [(1, 2186.0), (2, 2199.0), (4, 2205.0), (6, 2180.0), (8, 2203.0)]
    fit = fit_usl(levels_of(flat))
    assert not fit["fitted"] and "R²" in fit["reason"] and fit["r2"] < 0.9


def test_capacity_per_replica_within_the_slo():
    # p95 grows with replicas sharing the machine; 8 replicas miss a 50 ms SLO
    levels = levels_of([(1, 180.0), (2, 340.0), (4, 600.0), (8, 900.0)],
                       p95=lambda n: 10.0 * n)
    cap = capacity_within_slo(levels, 50)
    assert [r["within_slo"] for r in cap["per_level"]] == [True, True, True, False]
    assert cap["levels"] == [1, 2, 4] and cap["min"] == 150.0 and cap["max"] == 180.0
    assert cap["reason"] == ""


def test_capacity_not_said_without_an_slo_or_when_none_met_it():
    levels = levels_of([(1, 180.0), (2, 340.0)], p95=lambda n: 80.0)
    assert capacity_within_slo(levels, None)["reason"].startswith("no latency objective")
    cap = capacity_within_slo(levels, 50)
    assert cap["min"] is None and "no replica count met p95 ≤ 50 ms" in cap["reason"]
    # errors above the limit fail the SLO too
    cap = capacity_within_slo(levels_of([(1, 180.0)], errors=0.05), 100)
    assert cap["per_level"][0]["within_slo"] is False


def test_answer_from_a_measured_count():
    levels = levels_of([(1, 180.0), (2, 340.0), (4, 600.0), (8, 900.0)],
                       p95=lambda n: 10.0 * n)
    found = capacity_findings(levels, 50, rate=500)
    answer = found["answer"]
    assert (answer["replicas"], answer["how"]) == (4, "measured")
    assert answer["sentence"].startswith("for 500 req/s at p95 ≤ 50 ms: 4 replica(s)")
    # by default, the highest throughput of the run, here not within the SLO (8 replicas)
    answer = capacity_findings(levels, 50)["answer"]
    assert answer["rate"] == 900.0 and answer["rate_source"].startswith("the highest")


def test_answer_extrapolated_with_the_law_and_beyond_its_peak():
    levels = levels_of(curve(0.05, 0.002, 200.0, counts=(1, 2, 3, 4)), p95=lambda n: 20.0)
    answer = capacity_findings(levels, 50, rate=1000)["answer"]
    expected = next(n for n in range(1, 100) if usl(n, 0.05, 0.002, 200) >= 1000)
    assert answer["replicas"] == expected and answer["how"].startswith("extrapolated")
    assert f"about {expected} replicas" in answer["sentence"]
    # the law peaks near 1,480 req/s at 22 replicas: 2,000 cannot be reached
    answer = capacity_findings(levels, 50, rate=2000)["answer"]
    assert answer["replicas"] is None and "cannot be reached" in answer["sentence"]
    assert "1,480 req/s" in answer["sentence"] and "22 replicas" in answer["sentence"]


def test_answer_cannot_be_said_and_says_why():
    levels = levels_of([(1, 180.0), (2, 340.0)], p95=lambda n: 10.0)
    answer = capacity_findings(levels, None, rate=100)["answer"]
    assert answer["replicas"] is None and "without a latency objective" in answer["sentence"]
    answer = capacity_findings(levels, 50, rate=1000)["answer"]
    assert answer["replicas"] is None and "needs at least 3" in answer["sentence"]
    assert replicas_for(None, capacity_within_slo(levels, 50), fit_usl(levels))["replicas"] \
        is None


def test_fit_restricted_to_replica_bound_counts():
    levels = levels_of(curve(0.05, 0.002, 200.0, counts=(1, 2, 4, 8)), p95=lambda n: 20.0)
    found = capacity_findings(levels, 50, replica_bound={1, 2})
    assert not found["usl"]["fitted"]
    assert "only where the replicas limited throughput" in found["usl"]["reason"]
    assert capacity_findings(levels, 50, replica_bound={1, 2, 4, 8})["usl"]["fitted"]


def test_on_a_real_summary(tmp_path):
    """The analyzer's own summary (a synthetic history, 1/2/4 replicas) in, plain data out."""
    meta, cols = generate(SynthSpec(6000, [1, 2, 4], seed=5))
    summary = analyse(load_run(write(tmp_path / "run", meta, cols)), Thresholds()).summary
    slo = max(lv["latency_ms"]["p95"] for lv in summary["levels"]) + 1
    found = capacity_findings(summary["levels"], slo)
    cap = found["capacity_per_replica"]
    assert [r["level"] for r in cap["per_level"]] == [1, 2, 4]
    assert all(r["within_slo"] for r in cap["per_level"])
    assert cap["min"] == pytest.approx(min(lv["rps"] / lv["level"]
                                           for lv in summary["levels"]))
    assert found["answer"]["how"] == "measured" and found["answer"]["replicas"] in (1, 2, 4)
    assert found["usl"]["points"] == 3
