"""The load over time: the open model keeps its offered rate when the app slows down (the
closed model does not), arrivals are scheduled exactly, and an autoscaled run follows the
load up and back down, judged by the analysis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loadtest.contract.plan import LoadProfile, PlanError, RunPlan, Stage, compress, parse_profile
from loadtest.harness.arrivals import ArrivalSchedule
from tests.conftest import ROOT, free_port, run_locust


def test_arrival_schedule_follows_the_rate_exactly():
    flat = ArrivalSchedule(LoadProfile("open", ((0.0, 100.0), (10.0, 100.0))))
    times = flat.until(10.0)
    assert len(times) in (1000, 1001) and times[0] == 0.0  # the 1001st is 10.0, give or take
    assert times[999] == pytest.approx(9.99)
    assert np.allclose(np.diff(times), 0.01)
    ramp = ArrivalSchedule(LoadProfile("open", ((0.0, 0.0), (10.0, 200.0))))
    times = np.array(ramp.until(10.0))
    assert abs(len(times) - 1000) <= 2  # the integral of the ramp
    assert (times < 5).sum() == pytest.approx(250, abs=3)
    half = ArrivalSchedule(LoadProfile("open", ((0.0, 100.0), (10.0, 100.0))), share=0.5)
    assert len(half.until(10.0)) == 500


def test_profiles_and_presets():
    profile = parse_profile("0s:50,60s:400,120s:400,180s:50", "open", 0)
    assert profile.end == 180 and profile.value_at(30) == pytest.approx(225)
    spike = parse_profile("spike", "open", 300)
    assert spike.peak == 300 and spike.end == 120
    for bad in ("60s:40,30s:10", "fast", "10s:-1", "0s:10"):
        with pytest.raises(PlanError):
            parse_profile(bad, "open", 100)


def test_a_shortened_plan_keeps_min_steady_in_real_seconds():
    """SCALECHECK_MAX_RUN_TIME compresses the plan's clock, not the seconds the analysis
    needs to judge a level: a 2 s --min-steady compressed 6x to 0.33 s let a Kubernetes
    level whose pod took most of its 5 s stage to be ready go unjudged (inconclusive)."""
    stages = tuple(Stage(i, level, 30.0 * i, 30.0 * (i + 1)) for i, level in enumerate((1, 2, 4)))
    plan = RunPlan(load=LoadProfile("closed", ((0.0, 10.0), (90.0, 10.0))), stages=stages,
                   autoscale=None, faults=(), duration=90.0, pool=0, spawn_rate=10.0,
                   min_steady=2.0)
    short = compress(plan, 15.0)
    assert short.duration == 15.0 and [s.t_end for s in short.stages] == [5.0, 10.0, 15.0]
    assert short.min_steady == 2.0
    assert compress(plan, 120.0) is plan  # already that short


def _run(run_dir: Path, args: list[str], timeout: float = 240):
    base = ["--headless", "--run-dir", str(run_dir), "--stack-port", str(free_port()),
            "--api-port", str(free_port()), "--only-summary"]
    proc = run_locust([*base, *args], timeout=timeout)
    assert proc.returncode in (0, 1), proc.stderr[-2500:]
    return json.loads((run_dir / "run.json").read_text()), pd.read_parquet(run_dir / "requests")


def _rate(df: pd.DataFrame, start: float, end: float) -> float:
    return ((df.t_start >= start) & (df.t_start < end)).sum() / (end - start)


def test_open_model_keeps_its_rate_when_the_app_slows_down(tmp_path, no_leftovers):
    """100 ms added on the path to Redis between 4 s and 8 s: the closed model's 4 users
    slow down with the app; the open model's arrivals keep coming at 80/s, and their
    latency is measured from when each was due."""
    fault = ["--fault", "4s:latency:redis:100ms:4s"]
    closed_run, closed = _run(tmp_path / "closed", ["-u", "4", "-r", "4", "--scale-levels",
                                                    "1", "--stage-time", "12s", *fault])
    open_run, opened = _run(tmp_path / "open", ["--arrival-rate", "80", "--scale-levels", "1",
                                                "--stage-time", "12s", *fault])
    assert closed_run["status"] == open_run["status"] == "completed"
    t0c, t0o = closed.t_start.min(), opened.t_intended.min()
    closed_before, closed_during = _rate(closed, t0c + 1, t0c + 4), _rate(closed, t0c + 5,
                                                                          t0c + 8)
    assert closed_during < 0.5 * closed_before  # the closed model backs off with the app
    intended_during = ((opened.t_intended >= t0o + 5) & (opened.t_intended < t0o + 8)).sum() / 3
    dropped = open_run["dropped_arrivals"]["total"]
    assert intended_during + dropped / 3 == pytest.approx(80, rel=0.1)
    assert opened.t_intended.notna().all()
    late = (opened.t_end - opened.t_intended) * 1000
    assert (late >= opened.latency_ms - 1).all()  # from intended >= from sent
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(tmp_path / "open"),
                              "--no-report"], capture_output=True, text=True, timeout=120)
    summary = json.loads((tmp_path / "open" / "summary.json").read_text())
    assert "latency_from_intended_ms" in summary["levels"][0], verdict.stdout


def test_open_model_with_workers_shares_the_rate(tmp_path, no_leftovers):
    """--processes 2: each worker dispatches half the arrivals; together, the rate."""
    run, df = _run(tmp_path / "dist", ["--arrival-rate", "120", "--scale-levels", "2",
                                       "--stage-time", "8s", "--processes", "2"])
    assert run["status"] == "completed"
    assert df.worker.nunique() == 2
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)
    per_worker = df.groupby("worker").size()
    assert abs(per_worker.iloc[0] - per_worker.iloc[1]) <= 0.1 * len(df)
    dropped = run["dropped_arrivals"]["total"]
    assert len(df) + dropped == pytest.approx(120 * 8, rel=0.1)


def test_autoscaler_follows_the_load_up_and_back_down(tmp_path, no_leftovers):
    """HPA on requests/s, 100 per replica: 300 req/s needs 3 replicas; when the load falls
    back, the scale-down waits out its 8 s window, then returns to the minimum."""
    run_dir = tmp_path / "hpa"
    run, df = _run(run_dir, [
        "--load-model", "open", "--load-profile", "0s:40,6s:300,24s:300,27s:40,50s:40",
        "--autoscale", "hpa", "--autoscale-metric", "rps", "--autoscale-target", "100",
        "--min-replicas", "1", "--max-replicas", "4", "--autoscale-period", "2s",
        "--scale-down-window", "8s", "--slo-p95-ms", "200"], timeout=300)
    assert run["status"] == "completed", run.get("error")
    decisions = [e for e in run["stack_events"] if e["event"] == "autoscale_decision"]
    assert len(decisions) >= 15
    for key in ("metric_per_replica", "raw", "within_tolerance", "stabilized",
                "after_policies", "final", "source"):
        assert key in decisions[0], key
    ready = [e["level"] for e in run["stack_events"] if e["event"] == "scale_ready"]
    assert max(ready) >= 3 and ready[-1] == 1, ready
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                             capture_output=True, text=True, timeout=180)
    summary = json.loads((run_dir / "summary.json").read_text())
    a = summary["autoscaling"]
    assert a["policy"] == "hpa" and a["scale_changes"] >= 2
    assert a["rises"] and a["max_time_to_scale_s"] is not None
    assert a["max_time_to_scale_s"] < 20
    assert a["capacity_source"].startswith("the autoscaler's target")
    assert a["flaps"] == 0
    assert (run_dir / "figures" / "autoscaling.png").exists()
    levels = {lv["level"] for lv in summary["levels"]}
    assert {1, 3} <= levels or {1, 4} <= levels, levels
    assert verdict.returncode in (0, 1), verdict.stdout
