"""The hello app's state (keys, lists, sessions) checked Jepsen-style on a real stack:
the correct modes pass while the stack scales and while faults strike; each faulty mode
fails with the checker made for it, naming the replica and the operations."""

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
                "set_lost", "set_unexpected", "set_stale", "sessions_honoured")


def test_correct_modes_pass_while_the_stack_scales(tmp_path, no_leftovers):
    run_dir = tmp_path / "scaled"
    proc = run_state(run_dir, "--scale-levels", "1,3,2", "--stage-time", "6s",
                     "--min-steady", "2s")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    df = pd.read_parquet(run_dir / "requests")
    assert set(df.op.dropna()) == {"login", "write", "read", "add", "read-all", "session"}
    assert df.hostname.nunique() == 3
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


@pytest.mark.parametrize("env,check", [
    ({"KV_MODE": "cached"}, "register_linearizable"),
    ({"SESSION_MODE": "memory"}, "sessions_honoured"),
])
def test_each_faulty_mode_fails_with_its_checker(tmp_path, env, check, no_leftovers):
    run_dir = tmp_path / "faulty"
    proc = run_state(run_dir, "--scale-levels", "3", "--stage-time", "10s", env=env)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    code, summary = analyse(run_dir)
    checks = checks_of(summary)
    assert code == 1 and checks[check]["status"] == "fail", checks[check]
    text = json.dumps(checks[check]["evidence"])
    assert "hello-" in text  # the replica that served the violating read is named
    assert "user-" in text or "local/" in text  # ... and the operations, by who did them
