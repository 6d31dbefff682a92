"""End to end on the embedded stack: the real locustfile, real Locust, real stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from loadtest.analysis.consistency import OrderChecker
from tests.conftest import LOCUSTFILE, ROOT, free_port, run_locust


def analyze(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                          capture_output=True, text=True, timeout=120)


def load(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    return json.loads((run_dir / "run.json").read_text()), pd.read_parquet(run_dir / "requests")


def locust_args(run_dir: Path, levels: str, stage_time: str = "4s", users: int = 4) -> list[str]:
    return ["--headless", "-u", str(users), "-r", str(users), "--scale-levels", levels,
            "--stage-time", stage_time, "--run-dir", str(run_dir),
            "--stack-port", str(free_port()), "--only-summary"]


def order_violations(df: pd.DataFrame) -> int:
    """Requests b that started after some a ended, yet saw a counter not above a's."""
    ok = df.dropna(subset=["counter"])
    return int(OrderChecker().feed(ok["t_start"].to_numpy(), ok["t_end"].to_numpy(),
                                   ok["counter"].to_numpy(dtype=np.int64)).sum())


def test_sweep_records_every_request_per_level(tmp_path, no_leftovers):
    run_dir = tmp_path / "run"
    proc = run_locust(locust_args(run_dir, "1,2,3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert run["status"] == "completed"
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df) > 100
    assert [s["level"] for s in run["stages"]] == [1, 2, 3]
    for stage in run["stages"]:
        steady = df[(df.stage == stage["index"]) & (df.t_start >= stage["t_ready"])]
        assert steady.hostname.nunique() == stage["level"], stage
    assert df.counter.notna().all() and df.counter.is_unique
    assert order_violations(df) == 0
    assert run["counter"]["after"] - run["counter"]["before"] == len(df)
    for name in ("locust-report.html", "locust_stats.csv", "logs/haproxy.log",
                 "logs/redis.log", "logs/hello-3.log"):
        assert (run_dir / name).exists(), name
    verdict = analyze(run_dir)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [len(st["hostnames"]) for st in summary["stages"]] == [1, 2, 3]


@pytest.mark.parametrize("mode", ["racy", "local"])
def test_faulty_counter_modes_hand_out_duplicates(tmp_path, mode, no_leftovers):
    run_dir = tmp_path / mode
    proc = run_locust(locust_args(run_dir, "2", "5s", users=8), env={"COUNTER_MODE": mode})
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, df = load(run_dir)
    assert df.hostname.nunique() == 2
    assert df.counter.duplicated().sum() > 0
    verdict = analyze(run_dir)
    assert verdict.returncode == 1
    assert "FAIL  counter_duplicates" in verdict.stdout
    assert "FAIL  counter_lost_increments" in verdict.stdout


def test_processes_2_records_both_workers_in_master_dir(tmp_path, no_leftovers):
    run_dir = tmp_path / "dist"
    proc = run_locust([*locust_args(run_dir, "1,2", users=6), "--processes", "2"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert df.worker.nunique() == 2
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)
    assert df.counter.is_unique
    assert set(df.stage) == {0, 1}


def test_sigint_mid_run_keeps_records_and_cleans_up(tmp_path, no_leftovers):
    run_dir = tmp_path / "int"
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
           *locust_args(run_dir, "1,2,3", "6s")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list((run_dir / "requests").glob("*.parquet")) if run_dir.exists() else []
        if len(parts) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    run, df = load(run_dir)
    assert run["status"] == "interrupted", err[-1500:]
    assert run["ended"] is not None
    assert run["totals"]["recorded"] == len(df) == run["totals"]["locust"] > 0


def test_replica_killed_mid_stage(tmp_path, no_leftovers):
    run_dir = tmp_path / "kill"
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
           *locust_args(run_dir, "2,3", "5s")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    victim = None
    log = str(run_dir / "logs" / "hello-2.log")  # the replica's stdout: names it uniquely
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.3)
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if "app.serve" in " ".join(p.info["cmdline"] or []) and \
                        any(f.path == log for f in p.open_files()):
                    victim = p
                    break
            except psutil.Error:
                continue
    assert victim is not None, "replica hello-2 never appeared"
    time.sleep(1.5)
    os.killpg(victim.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode in (0, 1), err[-2000:]  # 1: Locust saw failed requests
    run, df = load(run_dir)
    assert run["status"] == "completed", err[-2000:]
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)
    assert "replica_died" in [e["event"] for e in run["stack_events"]]
    last = run["stages"][-1]
    steady = df[(df.stage == 1) & (df.t_start >= last["t_ready"])]
    assert steady.hostname.nunique() == 3 and "hello-2" not in set(steady.hostname)


@pytest.mark.parametrize("args,message", [
    (["--stack", "swarm"], "unknown backend"),
    (["--scale-levels", "0"], "not a scale"),
    (["--scale-levels", ""], "empty"),
    (["--scale-levels", "1,x"], "not a whole number"),
    (["--stage-time", "soon"], "not a duration"),
    (["--counter-field", "xml:visits"], "json:FIELD"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, no_leftovers):
    proc = run_locust(["--headless", "-u", "1", "--run-dir", str(tmp_path / "r"),
                       "--stack-port", str(free_port()), *args], timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], proc.stderr


def test_busy_port_is_named_on_the_command_line(tmp_path, no_leftovers):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_locust(["--headless", "-u", "1", "--run-dir", str(tmp_path / "r"),
                           "--stack-port", str(port)], timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"port {port} on 127.0.0.1 is busy" in proc.stderr


def test_missing_binary_on_the_command_line(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent)}  # python and locust, no redis-server
    proc = run_locust(["--headless", "-u", "1", "--run-dir", str(tmp_path / "r"),
                       "--stack-port", str(free_port())], env=env, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "apt-get install redis-server" in proc.stderr


def test_harness_killed_hard_keeps_flushed_records(tmp_path, no_leftovers):
    """kill -9 of Locust: what was flushed stays readable, and the stack dies with it."""
    run_dir = tmp_path / "kill9"
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
           *locust_args(run_dir, "1,2", "20s")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if run_dir.exists() and len(list((run_dir / "requests").glob("*.parquet"))) >= 3:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait(30)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "running"  # it never got to say otherwise
    df = pd.read_parquet(run_dir / "requests")
    assert len(df) > 0 and df.counter.is_unique


def test_web_ui_mode_runs_the_shape(tmp_path, no_leftovers):
    """Not headless: the web UI starts the shape (--autostart) and Locust quits after it."""
    run_dir = tmp_path / "web"
    args = [a for a in locust_args(run_dir, "1,2", "3s") if a != "--headless"]
    proc = run_locust([*args, "--autostart", "--autoquit", "1", "--web-host", "127.0.0.1",
                       "--web-port", str(free_port())], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert run["status"] == "completed" and [s["level"] for s in run["stages"]] == [1, 2]
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)


def test_options_show_in_the_web_ui(tmp_path, no_leftovers):
    import urllib.request

    port = free_port()
    args = [a for a in locust_args(tmp_path / "ui", "1,2", "3s") if a != "--headless"]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
                             *args, "--web-host", "127.0.0.1", "--web-port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        page = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "scale_levels" not in page:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    page = resp.read().decode()
            except OSError:
                time.sleep(0.3)
        assert "scale_levels" in page and "stage_time" in page
    finally:
        proc.terminate()
        proc.wait(60)


def test_rate_per_user_caps_the_offered_load(tmp_path, no_leftovers):
    run_dir = tmp_path / "rate"
    proc = run_locust([*locust_args(run_dir, "1", "4s", users=2), "--rate-per-user", "5"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    # 2 users x 5 req/s x 4 s = 40; as fast as possible would be thousands.
    assert 10 <= len(df) <= 80
    assert run["options"]["rate_per_user"] == 5


def test_scale_down_under_load_cuts_no_request(tmp_path, no_leftovers):
    run_dir = tmp_path / "down"
    proc = run_locust(locust_args(run_dir, "3,1", "4s", users=6))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert (df.status == 200).all() and df.error.isna().all()
    removed = [e["hostname"] for e in run["stack_events"] if e["event"] == "replica_removed"]
    assert sorted(removed) == ["hello-2", "hello-3"]
    steady = df[(df.stage == 1) & (df.t_start >= run["stages"][1]["t_ready"])]
    assert set(steady.hostname) == {"hello-1"}


def test_reset_stats_makes_the_comparison_not_checked(tmp_path, no_leftovers):
    """--reset-stats drops Locust's count after spawning: compare nothing, say so."""
    run_dir = tmp_path / "reset"
    proc = run_locust([*locust_args(run_dir, "1", "3s"), "--reset-stats"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert run["totals"]["locust"] is None and run["totals"]["recorded"] == len(df) > 0
    assert analyze(run_dir).returncode == 0
    checks = {c["name"]: c for c in json.loads((run_dir / "summary.json").read_text())["checks"]}
    assert checks["records_complete"]["status"] == "not checked"


def test_web_ui_reset_keeps_the_comparison_whole(tmp_path, no_leftovers):
    import urllib.request

    run_dir = tmp_path / "uireset"
    port = free_port()
    args = [a for a in locust_args(run_dir, "1,2", "3s") if a != "--headless"]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
                             *args, "--autostart", "--autoquit", "1", "--web-host", "127.0.0.1",
                             "--web-port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list((run_dir / "requests").glob("*.parquet")
                                                   if run_dir.exists() else []):
        time.sleep(0.2)
    reset = urllib.request.Request(f"http://127.0.0.1:{port}/stats/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=5) as resp:
        assert resp.status == 200
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    run, df = load(run_dir)
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)
