"""The hello app's state (keys, sets, counters, lists, sessions) checked Jepsen-style on a
real stack: the correct modes pass while the stack scales and while faults strike; each
faulty mode fails with the checker made for it, naming the replica and the operations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, free_port

STATE = ROOT / "loadtest" / "state.py"


def run_state(run_dir: Path, *args: str, env: dict | None = None, timeout: float = 240):
    import os

    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(STATE), "--headless",
           "--only-summary", "-u", "8", "-r", "8", "--run-dir", str(run_dir),
           "--stack-port", str(free_port()), "--api-port", str(free_port()), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def analyse(run_dir: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir),
                           "--no-report"], capture_output=True, text=True, timeout=300)
    return proc.returncode, json.loads((run_dir / "summary.json").read_text())


def checks_of(summary: dict) -> dict:
    return {c["name"]: c for c in summary["checks"]}


STATE_CHECKS = ("register_linearizable", "session_read_your_writes", "session_monotonic_reads",
                "set_lost", "set_unexpected", "set_stale", "sessions_honoured",
                "add_counter_lost", "add_counter_extra", "list_lost", "list_duplicated",
                "list_reordered", "list_stale")


def test_correct_modes_pass_while_the_stack_scales(tmp_path, no_leftovers):
    run_dir = tmp_path / "scaled"
    proc = run_state(run_dir, "--scale-levels", "1,3,2", "--stage-time", "6s",
                     "--min-steady", "2s")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    df = pd.read_parquet(run_dir / "requests")
    assert set(df.op.dropna()) == {"login", "write", "read", "add", "read-all", "session",
                                   "incr", "read-counter", "append", "read-list"}
    assert df.hostname.nunique() == 3
    # No context(): each of the 8 Locust users is a client of its own, numbered apart, in
    # the order they started (as the scenario numbers them): local/user3 is user-3.
    assert df.user.nunique() == 8 and (df.user < -1).all()
    writes = df[df.op == "write"]
    assert all(json.loads(v).startswith(f"user-{-1 - u}:")
               for u, v in zip(writes.user, writes.value))
    code, summary = analyse(run_dir)
    checks = checks_of(summary)
    assert code == 0, [(n, c["status"], c["reason"]) for n, c in checks.items()
                       if c["status"] in ("fail", "not checked")]
    for name in STATE_CHECKS:
        assert checks[name]["status"] == "pass", checks[name]
    assert summary["state"]["ops"]["register"] > 100


def test_correct_modes_pass_through_faults(tmp_path, no_leftovers):
    """A replica killed (and replaced), Redis restarted with its data: the state stays
    correct; the requests the faults cut are unknown outcomes, not violations."""
    run_dir = tmp_path / "faults"
    proc = run_state(run_dir, "--scale-levels", "3", "--stage-time", "24s", "--replace-dead",
                     "--fault", "6s:kill-replica", "--fault", "14s:restart-redis:persist")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    _, summary = analyse(run_dir)
    checks = checks_of(summary)
    for name in STATE_CHECKS:
        assert checks[name]["status"] == "pass", checks[name]
    assert checks["faults_applied"]["status"] == "pass"


@pytest.mark.parametrize("env,faults,names,passes", [
    ({"KV_MODE": "cached"}, [], ["register_linearizable"], ["sessions_honoured"]),
    ({"SESSION_MODE": "memory"}, [], ["sessions_honoured"],
     ["register_linearizable", "set_lost", "add_counter_lost", "list_lost"]),
    # A read-modify-write counter and list: adds and appends lost.
    ({"TALLY_MODE": "racy", "LIST_MODE": "racy"}, [], ["add_counter_lost", "list_lost"],
     ["register_linearizable", "sessions_honoured", "set_lost", "add_counter_extra",
      "list_duplicated"]),
    # A client that re-sends after a timeout, under a Redis stall: adds and appends twice.
    ({"TALLY_MODE": "retrying", "LIST_MODE": "retrying"}, ["2s:pause-redis:1.5s"],
     ["add_counter_extra", "list_duplicated"], ["register_linearizable", "set_unexpected"]),
], ids=["cached-keys", "memory-sessions", "racy-counter-and-list", "retrying-counter-and-list"])
def test_each_faulty_mode_fails_with_its_checker(tmp_path, env, faults, names, passes,
                                                 no_leftovers):
    run_dir = tmp_path / "faulty"
    args = [a for spec in faults for a in ("--fault", spec)]
    # A Redis stall stretches the app's answers past the default timeout (a third of the
    # stage): this test is about what the app's own retries do, so its requests may wait.
    proc = run_state(run_dir, "--scale-levels", "3", "--stage-time", "6s",
                     "--request-timeout", "10s", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    code, summary = analyse(run_dir)
    checks = checks_of(summary)
    assert code == 1
    for check in names:
        assert checks[check]["status"] == "fail", checks[check]
        assert checks[check]["value"] > 0
        text = json.dumps(checks[check]["evidence"])
        assert "hello-" in text  # the replica that served the violating read is named
        assert "local/user" in text  # ... and the operations, by the client that did them
    # The models the mode leaves correct pass in the same run: each checker blames its own.
    for check in passes:
        assert checks[check]["status"] == "pass", checks[check]
