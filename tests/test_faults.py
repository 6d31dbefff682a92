"""Scheduled faults on the embedded stack, for real: each is applied at its time, recorded
(asked, applied, ended), and judged: what it caused, how soon the app recovered, what the
counter says. The faulty app modes are the control group."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from loadtest.contract.plan import PlanError, parse_fault
from tests.conftest import ROOT, free_port, run_locust


def fault_run(run_dir: Path, levels: str, stage_time: str, faults: list[str],
              extra: list[str] = (), env: dict | None = None, users: int = 4):
    args = ["--headless", "-u", str(users), "-r", str(users), "--scale-levels", levels,
            "--stage-time", stage_time, "--run-dir", str(run_dir), "--stack-port",
            str(free_port()), "--api-port", str(free_port()), "--only-summary", *extra]
    for fault in faults:
        args += ["--fault", fault]
    proc = run_locust(args, env=env, timeout=240)
    assert proc.returncode in (0, 1), proc.stderr[-2500:]
    run = json.loads((run_dir / "run.json").read_text())
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                             capture_output=True, text=True, timeout=180)
    summary = json.loads((run_dir / "summary.json").read_text())
    return run, pd.read_parquet(run_dir / "requests"), verdict, summary


def checks_of(summary: dict) -> dict:
    return {c["name"]: c for c in summary["checks"]}


def fault_events(run: dict, index: int) -> list[str]:
    return [e["event"] for e in run["stack_events"] if e.get("fault") == index]


def test_fault_specs_parse_and_bad_ones_say_why():
    assert parse_fault("30s:kill-replica").kind == "kill-replica"
    assert parse_fault("45s:pause-redis:5s").duration == 5
    spec = parse_fault("70s:latency:redis:50ms:10s")
    assert (spec.at, spec.latency_ms, spec.duration) == (70, 50, 10)
    assert parse_fault("60s:restart-redis:persist").persist
    assert parse_fault("1m:pause-replica:2s:hello-3").target == "hello-3"
    for bad, words in [("kill-replica", "WHEN:KIND"), ("5s:pause-redis", "DURATION"),
                       ("5s:latency:db:5ms:1s", "latency:redis"), ("soon:kill-replica",
                                                                     "not a duration")]:
        with pytest.raises(PlanError, match=words):
            parse_fault(bad)


def test_replica_faults_and_a_balancer_restart(tmp_path, no_leftovers):
    """kill (replaced, as an orchestrator would), freeze for 2 s, restart the balancer:
    each recorded, each recovered from, the counter consistent throughout."""
    run, df, verdict, s = fault_run(
        tmp_path / "replicas", "3", "24s",
        ["3s:kill-replica", "9s:pause-replica:2s", "16s:restart-balancer"],
        extra=["--replace-dead"])
    assert run["status"] == "completed"
    for i in range(3):
        assert fault_events(run, i) == ["fault_asked", "fault_applied", "fault_ended"], i
    kill, pause, restart = s["faults"]
    assert kill["kind"] == "kill-replica" and kill["details"]["hostname"] == "hello-3"
    assert kill["replaced_after_s"] is not None and kill["replaced_after_s"] < 5
    assert pause["duration_s"] == pytest.approx(2, abs=0.3)
    for fault in (kill, pause, restart):
        assert fault["recovered"] and fault["recovery_s"] < 10, fault
    checks = checks_of(s)
    assert checks["faults_applied"]["status"] == "pass"
    assert checks["fault_recovery_s"]["status"] == "pass"
    assert checks["replicas_died"]["status"] == "pass"  # the schedule killed it: planned
    for name in ("counter_duplicates", "counter_gaps", "counter_real_time_order"):
        assert checks[name]["status"] == "pass", checks[name]
    # faults are judged apart: the steady segments' error rate is untouched by them
    assert checks["error_rate"]["status"] == "pass"
    assert verdict.returncode == 0, verdict.stdout


def test_redis_faults_give_unknown_outcomes_and_a_named_reset(tmp_path, no_leftovers):
    """Pause Redis, slow and reset its link, restart it with and without persistence:
    unknown outcomes but never an unexplained increment (atomic mode); the restart that
    loses the counter is named, and each side of it checked on its own."""
    run, df, verdict, s = fault_run(
        tmp_path / "redis", "2", "30s",
        ["3s:pause-redis:2s", "8s:latency:redis:100ms:2s", "13s:reset:redis:1s",
         "18s:restart-redis:persist", "24s:restart-redis"])
    assert run["status"] == "completed", run.get("error")
    pause, latency, reset, persisted, lost = s["faults"]
    assert pause["unknown"] > 0
    assert latency["p99_ms"] > 100
    assert persisted["counter_reset"] is False and lost["counter_reset"] is True
    assert "without persistence" in lost["note"]
    c = s["consistency"]
    assert len(c["resets"]) == 1 and c["resets"][0]["counter_after"] == 0
    assert c["unexplained_increments"] == 0 and c["duplicates"] == 0, c
    assert c["unexplained_gaps"] == 0, c
    for fault in s["faults"]:
        assert fault["recovered"], fault
    assert checks_of(s)["counter_unexplained_increments"]["status"] == "pass"


def test_retrying_app_is_caught_double_counting_under_a_redis_stall(tmp_path, no_leftovers):
    """The control group: the classic non-idempotent retry turns a stall into increments
    no request explains."""
    _, _, verdict, s = fault_run(
        tmp_path / "retrying", "2", "12s", ["3s:pause-redis:2s", "7s:reset:redis:1s"],
        env={"COUNTER_MODE": "retrying"}, users=6)
    c = s["consistency"]
    assert c["unexplained_increments"] > 0 or c["duplicates"] > 0 or c["unexplained_gaps"] > 0
    assert verdict.returncode == 1


def test_a_fault_still_in_effect_at_the_end_is_undone_before_the_counter_is_read(tmp_path):
    """A Redis pause longer than the run: woken first, so the counter is read and every
    counter check can be made; the fault's end is recorded as cut short."""
    run, df, verdict, s = fault_run(tmp_path / "cut", "1", "6s", ["3s:pause-redis:60s"])
    assert run["counter"]["after"] is not None, run.get("warnings")
    ends = [e for e in run["stack_events"] if e["event"] == "fault_ended"]
    assert len(ends) == 1 and ends[0]["cut_short"] is True
    checks = checks_of(s)
    for name in ("counter_lost_increments", "counter_unexplained_increments",
                 "counter_final_below_returned"):
        assert checks[name]["status"] == "pass", checks[name]


@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
def test_a_pause_while_a_dead_replica_is_replaced(tmp_path, balancer, no_leftovers):
    """A replica frozen while the replacement of a killed one is on its way: still in
    service (as a frozen pod is to its orchestrator), so the scale completes in seconds
    rather than waiting 30 s for the balancer to route to a set without it (it did, and
    the run failed)."""
    run, _, verdict, _ = fault_run(
        tmp_path / "run", "3", "8s", ["1s:kill-replica", "1500ms:pause-replica:250ms"],
        extra=["--replace-dead", "--balancer", balancer], users=6)
    assert run["status"] == "completed", run.get("error")
    events = run["stack_events"]
    asked = next(e for e in events if e["event"] == "scale_asked" and
                 e["by"] == "replace-dead")
    ready = next(e for e in events if e["event"] == "scale_ready" and e["t"] > asked["t"])
    assert ready["level"] == 3 and ready["t"] - asked["t"] < 10
    assert not [e for e in events if e["event"] == "scale_failed"]
    assert len({e["hostname"] for e in events if e["event"] == "replica_added"}) == 4


def test_a_fault_the_backend_cannot_apply_is_refused_before_anything_starts(tmp_path):
    """Capabilities are protocols a backend implements (loadtest.stack.base): Compose has
    no proxy in front of its Redis, a URL we do not control has no replicas to kill."""
    from loadtest.stack import backend_class
    from loadtest.stack.base import BalancerView, ReplicaFaults, StoreLinkFaults

    assert issubclass(backend_class("local"), StoreLinkFaults)
    assert not issubclass(backend_class("compose"), StoreLinkFaults)
    assert issubclass(backend_class("compose"), ReplicaFaults)
    assert not issubclass(backend_class("external"), BalancerView)
    proc = run_locust(["--headless", "-u", "1", "--stack", "compose", "--fault",
                       "2s:latency:redis:50ms:1s", "--run-dir", str(tmp_path / "r"),
                       "--stack-port", str(free_port())], timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "scalecheck: error: --fault '2s:latency:redis:50ms:1s': the compose stack cannot "
        "delay the link to its store")
    assert not (tmp_path / "r").exists()
