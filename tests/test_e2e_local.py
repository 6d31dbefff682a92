"""End to end on the embedded stack: the real locustfile, real Locust, real stack."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from loadtest.analysis.consistency import OrderChecker
from loadtest.contract import events as ev
from tests.conftest import LOCUSTFILE, ROOT, free_port, run_locust


def analyze(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                          capture_output=True, text=True, timeout=120)


def load(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    return json.loads((run_dir / "run.json").read_text()), pd.read_parquet(run_dir / "requests")


def locust_args(run_dir: Path, levels: str, stage_time: str = "4s", users: int = 4,
                balancer: str = "traefik", min_steady: str | None = "2s") -> list[str]:
    """A short run. ``min_steady``: on a busy machine a rescale may take most of a short
    stage; the plan then waits for each level to have served steadily this long."""
    return ["--headless", "-u", str(users), "-r", str(users), "--scale-levels", levels,
            "--stage-time", stage_time, "--run-dir", str(run_dir), "--balancer", balancer,
            "--stack-port", str(free_port()), "--api-port", str(free_port()), "--only-summary",
            *(["--min-steady", min_steady] if min_steady else [])]


def steady_windows_hold(run: dict, need: float) -> None:
    """--min-steady as the analysis counts steady: from the margin after a change was ready
    to the lead before the next change was asked."""
    margin, lead = ev.TRANSITION_MARGIN_S, ev.TRANSITION_LEAD_S
    stages = run["stages"]
    for stage, after in zip(stages, stages[1:]):
        window = (after["scale_asked"] - lead) - (stage["t_ready"] + margin)
        assert window >= need - 0.05, (stage, after)


def summary_of(run_dir: Path) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """analyze.py on the run: (process, summary, checks by name)."""
    proc = analyze(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    return proc, summary, {c["name"]: c for c in summary["checks"]}


def order_violations(df: pd.DataFrame) -> int:
    """Requests b that started after some a ended, yet saw a counter not above a's."""
    ok = df.dropna(subset=["counter"])
    return int(OrderChecker().feed(ok["t_start"].to_numpy(), ok["t_end"].to_numpy(),
                                   ok["counter"].to_numpy(dtype=np.int64)).sum())


def test_min_steady_holds_on_a_loaded_machine(tmp_path, no_leftovers):
    """Two processes spinning beside the run (a busy 2-core machine): every level of a
    1 -> 3 -> 2 sweep of 4 s stages with --min-steady 2s is judged, never inconclusive."""
    spin = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 90\n"
                              "while time.time() < end: pass"]) for _ in range(2)]
    try:
        run_dir = tmp_path / "run"
        proc = run_locust(locust_args(run_dir, "1,3,2", users=6))
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, _ = load(run_dir)
    steady_windows_hold(run, 2.0)
    _, summary, checks = summary_of(run_dir)
    assert checks["levels_judged"]["status"] == "pass", checks["levels_judged"]


@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
def test_sweep_records_every_request_per_level(tmp_path, balancer, no_leftovers):
    run_dir = tmp_path / "run"
    proc = run_locust(locust_args(run_dir, "1,2,3", balancer=balancer))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert run["status"] == "completed"
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df) > 100
    assert [s["level"] for s in run["stages"]] == [1, 2, 3]
    for stage in run["stages"]:
        steady = df[(df.stage == stage["index"]) & (df.t_start >= stage["t_ready"])]
        assert steady.hostname.nunique() == stage["level"], stage
        assert stage["t_end"] - stage["t_ready"] >= 2.0, stage  # --min-steady held it
    steady_windows_hold(run, 2.0)
    # Both ways of naming the replica, recorded for every request, agree: the app's own
    # word and the balancer's (HAProxy's header; Traefik's access log, joined after the run).
    assert df.server.notna().all() and (df.server == df.hostname).all(), \
        df[df.server != df.hostname][["hostname", "server", "status"]].head()
    assert df.counter.notna().all() and df.counter.is_unique
    assert order_violations(df) == 0
    assert run["counter"]["after"] - run["counter"]["before"] == len(df)
    logs = {"traefik": ["logs/traefik.log", "logs/traefik-access.log"],
            "haproxy": ["logs/haproxy.log"]}[balancer]
    for name in ("locust-report.html", "locust_stats.csv", "logs/redis.log", "logs/hello-3.log",
                 *logs):
        assert (run_dir / name).exists(), name
    assert run["stack"]["balancer"] == balancer and run["stack"]["balancer_version"]
    verdict, summary, _ = summary_of(run_dir)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert [len(st["hostnames"]) for st in summary["stages"]] == [1, 2, 3]
    assert [lv["level"] for lv in summary["levels"]] == [1, 2, 3]


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


def _processes_naming(text: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(
                    p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_processes_2_records_both_workers_in_master_dir(tmp_path, no_leftovers):
    run_dir = tmp_path / "dist"
    proc = run_locust([*locust_args(run_dir, "1,2", users=6), "--processes", "2"])
    # The forked workers carry the master's command line (and so its run directory):
    # none may outlive the master.
    assert _processes_naming(str(run_dir)) == []
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert df.worker.nunique() == 2
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)
    assert df.counter.is_unique
    assert set(df.stage) == {0, 1}


def test_locust_run_time_ends_the_plan(tmp_path, no_leftovers):
    """--run-time is Locust's own way to say how long: the plan ends there, and the levels
    share it when no --stage-time is given."""
    run_dir = tmp_path / "rt"
    args = [a for a in locust_args(run_dir, "1,2", min_steady=None)
            if a not in ("--stage-time", "4s")]
    started = time.monotonic()
    proc = run_locust([*args, "--run-time", "12s"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert run["plan"]["duration"] == 12
    assert [(s["t_start"], s["t_end"]) for s in run["plan"]["stages"]] == [(0, 6), (6, 12)]
    assert 11 < df.t_end.max() - df.t_start.min() < 13.5
    assert time.monotonic() - started < 60  # not the 30 s a stage the plan used to default to


def _socket_dirs() -> set[str]:
    """What a run could leave in /tmp (sockets, state): nothing, however it ends."""
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "scalecheck*")))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_keeps_records_and_cleans_up(tmp_path, sig, no_leftovers):
    """Ctrl-C, and SIGTERM (CI cancellation, `timeout`) alike: records flushed, counter
    read, run.json completed as interrupted, every process gone, nothing left in /tmp."""
    run_dir = tmp_path / "int"
    before = _socket_dirs()
    proc = _start(run_dir, locust_args(run_dir, "1,2,3", "6s"))
    _wait_parts(run_dir, 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err[-1500:]  # never 0: CI must not read success
    run, df = load(run_dir)
    assert run["status"] == "interrupted", err[-1500:]
    assert run["ended"] is not None and run["counter"]["after"] is not None
    assert run["totals"]["recorded"] == len(df) == run["totals"]["locust"] > 0
    assert "Traceback" not in err
    assert _socket_dirs() <= before
    verdict, _, checks = summary_of(run_dir)
    assert verdict.returncode == 3, verdict.stdout  # what ran is judged; the rest never ran
    assert checks["run_completed"]["status"] == "not checked"


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_the_stack_starts(tmp_path, sig, code, no_leftovers):
    run_dir = tmp_path / "early"
    before = _socket_dirs()
    proc = _start(run_dir, locust_args(run_dir, "4", "6s"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (run_dir / "run.json").exists():
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-1500:]
    assert "Traceback" not in err and "while the stack was starting" in err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert _socket_dirs() <= before


def test_two_runs_on_one_port(tmp_path, no_leftovers):
    """The second run on a port is refused in one line; the first goes on undisturbed."""
    port = str(free_port())
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    args = lambda d: [a if a != "PORT" else port for a in  # noqa: E731
                      ["--headless", "-u", "2", "-r", "2", "--scale-levels", "2",
                       "--stage-time", "6s", "--run-dir", str(d), "--stack-port", "PORT",
                       "--only-summary"]]
    first = _start(first_dir, args(first_dir))
    second = _start(second_dir, args(second_dir))
    _, err2 = second.communicate(timeout=60)
    _, err1 = first.communicate(timeout=90)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (err1[-800:], err2[-800:])
    loser_err = err2 if second.returncode == 2 else err1
    assert f"port {port}" in loser_err and "Traceback" not in loser_err
    winner = first_dir if first.returncode == 0 else second_dir
    verdict, summary, _ = summary_of(winner)
    assert verdict.returncode == 0, verdict.stdout
    assert summary["consistency"]["duplicates"] == 0


def test_a_typo_in_the_fields_is_caught_in_seconds(tmp_path, no_leftovers):
    run_dir = tmp_path / "typo"
    proc = run_locust([*locust_args(run_dir, "1", "3s"), "--counter-field", "json:vists"])
    assert proc.returncode == 0, proc.stderr[-1500:]
    warnings = [ln for ln in proc.stderr.splitlines() if "carried no json:vists" in ln]
    assert len(warnings) == 1 and "check --counter-field" in warnings[0]
    run, _ = load(run_dir)
    assert run["warnings"] and run["warnings"][0]["t"] - run["test_started"] < 3
    verdict, _, checks = summary_of(run_dir)
    assert verdict.returncode == 1  # every response's counter is unknown: far above 1 %
    assert checks["unknown_rate"]["status"] == "fail"
    assert checks["counter_duplicates"]["status"] == "not checked"


def test_redis_killed_mid_run_is_not_a_pass(tmp_path, no_leftovers):
    run_dir = tmp_path / "redis9"
    proc = _start(run_dir, locust_args(run_dir, "2", "8s"))
    _wait_parts(run_dir, 3)
    redis_pid = _child_named(proc.pid, "redis-server")
    os.kill(redis_pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=90)
    run, df = load(run_dir)
    assert run["status"] == "completed" and run["counter"]["after"] is None
    assert "store_died" in [e["event"] for e in run["stack_events"]]
    verdict, summary, checks = summary_of(run_dir)
    assert verdict.returncode == 1, verdict.stdout
    assert checks["unknown_rate"]["status"] == "fail"
    assert checks["counter_lost_increments"]["status"] == "not checked"


def test_redis_stalled_3s_gives_unknown_outcomes_not_double_counts(tmp_path, no_leftovers):
    """SIGSTOP of Redis for 3 s: the app (atomic mode) answers within REDIS_TIMEOUT with no
    counter; each of those INCRs may or may not have happened; none happened twice."""
    run_dir = tmp_path / "stall"
    proc = _start(run_dir, locust_args(run_dir, "2", "10s"))
    _wait_parts(run_dir, 3)
    redis_pid = _child_named(proc.pid, "redis-server")
    os.kill(redis_pid, signal.SIGSTOP)
    time.sleep(3)
    os.kill(redis_pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=90)
    run, df = load(run_dir)
    assert run["status"] == "completed", err[-1500:]
    stalled = df[df.counter.isna()]
    assert len(stalled) > 0 and stalled.latency_ms.max() < 1500  # REDIS_TIMEOUT 0.5 s honoured
    verdict, summary, checks = summary_of(run_dir)
    c = summary["consistency"]
    assert c["unknown"] == len(stalled) and c["unexplained_increments"] == 0
    assert c["duplicates"] == 0 and c["unexplained_gaps"] == 0
    for name in ("counter_duplicates", "counter_gaps", "counter_unexplained_increments",
                 "counter_lost_increments"):
        assert checks[name]["status"] == "pass", checks[name]


def test_balancer_killed_mid_run_fails_the_run_in_one_line(tmp_path, no_leftovers):
    run_dir = tmp_path / "lb9"
    proc = _start(run_dir, locust_args(run_dir, "2", "10s"))
    _wait_parts(run_dir, 3)
    os.kill(_child_named(proc.pid, "traefik"), signal.SIGKILL)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 8  # noticed promptly, not at the plan's end
    assert proc.returncode == 2
    assert "Traceback" not in err and "the balancer (traefik) exited" in err
    run, _ = load(run_dir)
    assert run["status"] == "failed" and "balancer" in run["error"]
    verdict, _, checks = summary_of(run_dir)
    # A fail, not merely "not a pass": the requests the dead balancer refused are errors,
    # and the run that stopped early cannot be judged complete.
    assert verdict.returncode == 1, verdict.stdout
    assert checks["error_rate"]["status"] == "fail", checks["error_rate"]
    assert checks["run_completed"]["status"] == "not checked"


@contextlib.contextmanager
def small_disk(where: Path, size: str = "3m"):
    """A tmpfs of ``size`` at ``where`` (root only: the test skips otherwise), unmounted
    whatever happens."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path, leave: int) -> None:
    """Write ``path`` until its filesystem has about ``leave`` bytes free."""
    with open(path, "ab") as fh:
        while (free := shutil.disk_usage(path.parent).free) > leave:
            fh.write(b"x" * min(64 * 1024, free - leave))
            fh.flush()


class RunawayWriter(threading.Thread):
    """Another program's log gone wild: once ``start_when`` exists, it takes every byte
    that comes free on the disk, until stopped."""

    def __init__(self, path: Path, start_when: Callable[[], bool]) -> None:
        super().__init__(daemon=True)
        self.path, self.start_when, self.stopped = path, start_when, threading.Event()

    def run(self) -> None:
        while not self.start_when() and not self.stopped.wait(0.05):
            pass
        with open(self.path, "ab", buffering=0) as fh:
            while not self.stopped.is_set():
                try:
                    fh.write(b"x" * 65536)
                except OSError:
                    try:
                        fh.write(b"x" * 4096)
                    except OSError:
                        self.stopped.wait(0.005)


def test_the_balancer_log_gives_its_room_to_the_records(tmp_path, no_leftovers):
    """A disk with little room: Traefik's access log (a line per request, five times the
    size of a record) is cut, saying so, and every request keeps its record. It used to
    fill the disk in seconds, and the records were lost."""
    with small_disk(tmp_path / "disk") as disk:
        fill(disk / "ballast", leave=1_400_000)
        run_dir = disk / "run"
        proc = run_locust(locust_args(run_dir, "2", "5s", min_steady=None), timeout=120)
        run, df = load(run_dir)
    print(f"1.4 MB free: {len(df)} records, the balancer's log cut "
          f"{run['disk']['balancer_log_cuts']} times ({run['disk']['balancer_log_bytes_cut']:,} "
          "bytes)")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert run["status"] == "completed", run.get("error")
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df) > 0
    assert run["disk"]["balancer_log_cuts"] >= 1 and run["disk"]["full"] is None
    cut = [w["text"] for w in run["warnings"] if "traefik-access.log was cut" in w["text"]]
    assert len(cut) == 1 and "to keep the room for the records" in cut[0]
    assert proc.stderr.strip().splitlines()[-1].startswith("scalecheck: analyse it with")


def test_a_full_disk_is_a_failed_run_said_in_one_line(tmp_path, no_leftovers):
    """A 3 MB disk that another program fills while the run records: the run stops, run.json
    says 'failed' and why, with its totals; exit 2, no traceback, and the last line says the
    run failed, why and how many requests have no record (it read 'run completed', exit
    1). analyze.py on a copy names the loss."""
    with small_disk(tmp_path / "disk") as disk:
        run_dir = disk / "run"
        writer = RunawayWriter(disk / "runaway.log",
                               lambda: len(glob.glob(str(run_dir / "requests" / "*.parquet"))) > 0)
        writer.start()
        try:
            proc = run_locust(locust_args(run_dir, "2", "10s", min_steady=None), timeout=120)
        finally:
            writer.stopped.set()
            writer.join(10)
        (disk / "runaway.log").unlink()
        shutil.copytree(run_dir, tmp_path / "copy")
    run = json.loads((tmp_path / "copy" / "run.json").read_text())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert run["status"] == "failed" and run["ended"] is not None, run
    assert run["error"].startswith("the disk of the run directory filled up (No space left "
                                   "on device"), run["error"]
    totals = run["totals"]
    assert totals["locust"] and totals["recorded"] is not None
    lost = totals["locust"] - totals["recorded"]
    last = proc.stderr.strip().splitlines()[-1]
    print(f"3 MB disk filled: {totals['recorded']} of {totals['locust']} requests recorded, "
          f"exit {proc.returncode}; last line: {last}")
    assert last.startswith("scalecheck: run failed: the disk of the run directory filled up")
    assert "run completed" not in proc.stderr
    if lost:
        assert last.endswith(f"; {lost:,} of {totals['locust']:,} requests were not recorded")
    analysed = analyze(tmp_path / "copy")
    # Lost records fail the run; with none lost, the run that failed is inconclusive. Never
    # a pass, and never 2: the copy of a failed run is good input for the analysis.
    assert analysed.returncode == (1 if lost else 3), analysed.stdout
    summary = json.loads((tmp_path / "copy" / "summary.json").read_text())
    check = {c["name"]: c for c in summary["checks"]}["records_complete"]
    assert check["evidence"]["lost"] == lost
    if lost:
        assert analysed.returncode == 1 and check["status"] == "fail"
        assert analysed.stdout.strip().splitlines()[-2] == \
            f"verdict: FAIL — {lost:,} of {totals['locust']:,} requests have no record"


def _child_named(pid: int, name: str, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if child.name() == name:
                    return child.pid
            except psutil.Error:
                continue
        time.sleep(0.1)
    raise AssertionError(f"no {name} under pid {pid}")


def _find_replica(run_dir: Path, name: str, timeout: float = 30):
    log = str(run_dir / "logs" / f"{name}.log")  # the replica's stdout: names it uniquely
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if "scalecheck_hello.serve" in " ".join(p.info["cmdline"] or []) and \
                        any(f.path == log for f in p.open_files()):
                    return p
            except psutil.Error:
                continue
        time.sleep(0.3)
    return None


def _start(run_dir: Path, args: list[str], env: dict | None = None) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})


def _wait_parts(run_dir: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = list((run_dir / "requests").glob("*.parquet")) if run_dir.exists() else []
        if len(parts) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {count} record parts in {run_dir} after {timeout}s")


def test_replica_killed_mid_stage(tmp_path, no_leftovers):
    """kill -9 of a replica: noticed within a second, its time in service ends there, the
    stage's real level is reported, fairness is judged on the replicas really up, and the
    verdict fails because a replica died on its own."""
    run_dir = tmp_path / "kill"
    proc = _start(run_dir, locust_args(run_dir, "3", "8s"))
    victim = _find_replica(run_dir, "hello-2")
    assert victim is not None, "replica hello-2 never appeared"
    _wait_parts(run_dir, 3)
    killed_at = time.time()
    os.killpg(victim.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode in (0, 1), err[-2000:]  # 1: Locust saw failed requests
    run, df = load(run_dir)
    assert run["status"] == "completed", err[-2000:]
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df)
    died = [e for e in run["stack_events"] if e["event"] == "replica_died"]
    assert [e["hostname"] for e in died] == ["hello-2"]
    assert 0 <= died[0]["t"] - killed_at < 1.0  # noticed within a second
    verdict, summary, checks = summary_of(run_dir)
    assert verdict.returncode == 1
    assert checks["replicas_died"]["status"] == "fail"
    assert checks["replicas_died"]["evidence"]["replicas"] == ["hello-2"]
    assert checks["fairness_jain"]["status"] == "pass", checks["fairness_jain"]
    after = [seg for seg in summary["segments"] if seg["t_start"] >= died[0]["t"]]
    assert after and all(seg["replicas"] == ["hello-1", "hello-3"] for seg in after)
    assert summary["levels"][0]["level"] == 2 and summary["levels"][-1]["level"] == 3


def test_replace_dead_restores_the_level(tmp_path, no_leftovers):
    run_dir = tmp_path / "replace"
    proc = _start(run_dir, [*locust_args(run_dir, "2", "8s"), "--replace-dead"])
    victim = _find_replica(run_dir, "hello-2")
    assert victim is not None
    _wait_parts(run_dir, 2)
    os.killpg(victim.pid, signal.SIGKILL)
    proc.communicate(timeout=90)
    run, _ = load(run_dir)
    added = [e["hostname"] for e in run["stack_events"] if e["event"] == "replica_added"]
    assert sorted(added) == ["hello-1", "hello-2", "hello-3"]
    asked = [e for e in run["stack_events"] if e["event"] == "scale_asked"]
    assert asked[-1]["by"] == "replace-dead" and asked[-1]["level"] == 2


@pytest.mark.parametrize("args,message", [
    (["--stack", "nomad"], "unknown backend"),
    (["--scale-levels", "0"], "not a scale"),
    (["--scale-levels", ""], "empty"),
    (["--scale-levels", "1,x"], "not a whole number"),
    (["--scale-levels", "\u00b2"], "not a whole number"),
    (["--scale-levels", "1,500", "--max-replicas", "8"], "above --max-replicas"),
    (["--stage-time", "soon"], "not a duration"),
    (["--counter-field", "xml:visits"], "json:FIELD"),
    (["-u", "-5"], "-u/--users"),
    (["-H", "localhost:4000"], "not an http(s) URL"),
    (["--balancer", "nginx"], "--balancer"),
    (["--fault", "99s:kill-replica"], "after the run ends"),
    (["--fault", "1s:explode"], "unknown fault"),
    (["--run-time", "10s", "--scale-levels", "1,2,4", "--stage-time", "5s"],
     "--run-time ends the run at 10s, before stage 3"),
    (["--autoscale", "hpa"], "--autoscale-target"),
    (["--load-model", "open"], "needs a rate"),
    (["--stack", "external"], "-H http://HOST:PORT"),
    (["--load-model", "open", "--load-profile", "0s:1e9,10s:1e9"], "at most 100,000"),
    (["-u", "1000000"], "at most 100,000"),
    # the autoscaler ignores --scale-levels (1,2,4 by default): the real conflict is named
    (["--autoscale", "hpa", "--autoscale-target", "100", "--arrival-rate", "20",
      "--min-replicas", "3", "--max-replicas", "2"], "--min-replicas 3 is above"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, no_leftovers):
    """Validated before anything is created: no run directory, reports/latest untouched."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "latest").symlink_to("previous")
    proc = run_locust(["--headless", "-u", "1", "--stack-port", str(free_port()), *args],
                      timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert sorted(p.name for p in reports.iterdir()) == ["latest"]
    assert os.readlink(reports / "latest") == "previous"


def test_read_only_run_directory_is_refused_before_anything_starts(tmp_path, no_leftovers):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    probe = ro / "probe"
    try:
        probe.touch()  # root ignores mode bits: make the directory read-only for real
        probe.unlink()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                       check=True, capture_output=True)
        mounted = True
    except PermissionError:
        mounted = False
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a read-only directory here: {exc}")
    try:
        proc = run_locust(["--headless", "-u", "1", "--run-dir", str(ro / "run"),
                           "--stack-port", str(free_port())], timeout=60)
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=False)
        ro.chmod(0o755)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write the run directory" in proc.stderr.strip().splitlines()[-1]
    assert not (ro / "run").exists()


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


@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
def test_scale_down_under_load_cuts_no_request(tmp_path, balancer, no_leftovers):
    """traefik/traefik#2459 and #7373 are 502s on scale changes: not here."""
    run_dir = tmp_path / "down"
    # 7 s a stage: the scale-down itself takes the app's 3 s drain and more under load
    # (5.9 s once on a busy machine), and the level must then hold steady to be looked at
    proc = run_locust(locust_args(run_dir, "3,1", "7s", users=6, balancer=balancer))
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert (df.status == 200).all() and df.error.isna().all()
    removed = [e["hostname"] for e in run["stack_events"] if e["event"] == "replica_removed"]
    assert sorted(removed) == ["hello-2", "hello-3"]
    steady = df[(df.stage == 1) & (df.t_start >= run["stages"][1]["t_ready"])]
    assert len(steady) > 0, run["stages"][1]
    assert set(steady.hostname) == {"hello-1"}


def test_reset_stats_keeps_the_comparison_whole(tmp_path, no_leftovers):
    """--reset-stats drops Locust's count once spawning completes: what it forgot is
    added back, so every request Locust saw is still compared with the records."""
    run_dir = tmp_path / "reset"
    args = locust_args(run_dir, "1", "4s", users=4)
    args[args.index("-r") + 1] = "2"  # spawning takes 2 s: requests before the reset
    proc = run_locust([*args, "--reset-stats"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run, df = load(run_dir)
    assert run["totals"]["locust_reset_added_back"] > 0
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df) > 0
    verdict, _, checks = summary_of(run_dir)
    assert verdict.returncode == 0, verdict.stdout
    assert checks["records_complete"]["status"] == "pass"


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
