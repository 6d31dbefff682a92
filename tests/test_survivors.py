"""Nothing survives the harness, not even a SIGKILL of it: replicas that ignore SIGTERM,
what a wrapper without ``exec`` started, the stack's balancer and Redis, and the workers
``--processes`` forked. The kernel's parent-death signal reaches direct children only;
the watchdog (loadtest.stack.watchdog) ends their process groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from loadtest.stack import private
from loadtest.stack.watchdog import OURS, registered
from tests.conftest import LOCUSTFILE, ROOT, free_port

APP = f"{sys.executable} {ROOT / 'tests' / 'apps' / 'hanging.py'}"
NEVER_HANGS_IGNORES_SIGTERM = ["--app-env", "HANG_EVERY=0", "--app-env", "IGNORE_SIGTERM=1"]


def test_the_watchdog_protocol():
    assert registered(["+10\n", "+11\n", "-10\n", "junk\n", "+x\n", "-99\n"])[0] == {11}
    assert registered([]) == (set(), set())
    groups, dirs = registered(["+12\n", "+/tmp/scalecheck-redis-ab\n", "+/tmp/scalecheck-x\n",
                               "-/tmp/scalecheck-x\n", "+/home/user\n", "+/\n"])
    # only the harness's own private directories, and only those still registered
    assert groups == {12} and dirs == {"/tmp/scalecheck-redis-ab"}


def _private_dirs() -> set[str]:
    """The harness's private directories for secrets and sockets (stack/private.py)."""
    return {str(p) for p in Path(private.root()).glob(f"{OURS}*") if p.is_dir()}


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless",
           "-u", "4", "-r", "4", "--scale-levels", "2", "--stage-time", "60s",
           "--stack-port", str(free_port()), "--api-port", str(free_port()),
           "--run-dir", str(run_dir), "--health-path", "/", "--counter-field", "none",
           *NEVER_HANGS_IGNORES_SIGTERM, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_running(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended early"
        try:
            if json.loads((run_dir / "run.json").read_text())["status"] == "running":
                time.sleep(1.5)  # users sending, the replicas serving
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    pytest.fail("the run never started")


def _kill_and_look(proc: subprocess.Popen) -> list[str]:
    family = [p for p in psutil.Process(proc.pid).children(recursive=True)
              if "loadtest.stack.watchdog" not in " ".join(p.cmdline())]
    assert len(family) >= 3, [p.cmdline() for p in family]  # two replicas, the balancer
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    _, alive = psutil.wait_procs(family, timeout=2)
    return [" ".join(p.cmdline())[:120] for p in alive if p.is_running() and
            p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("app", [APP, f"sh -c '{APP} {{port}} & wait'"],
                         ids=["ignores-sigterm", "wrapper-without-exec"])
def test_sigkill_of_the_harness_leaves_nothing(tmp_path, app):
    cmd = app if "{port}" in app else f"{app} {{port}}"
    before = _private_dirs()
    proc = _start(tmp_path / "run", "--app-cmd", cmd, "--with-redis", "--balancer", "haproxy")
    try:
        _wait_running(proc, tmp_path / "run")
        made = _private_dirs() - before
        assert made, "the run's Redis secret and HAProxy socket directories"
        left = _kill_and_look(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert left == [], f"still running 2 s after the harness was killed: {left}"
    deadline = time.monotonic() + 5
    while made & _private_dirs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not made & _private_dirs(), "the watchdog removed the run's private directories"


def test_sigkill_of_a_master_ends_its_forked_workers(tmp_path):
    if os.cpu_count() is None:
        pytest.skip("cannot tell the cores")
    proc = _start(tmp_path / "run", "--app-cmd", f"{APP} {{port}}", "--processes", "2")
    try:
        _wait_running(proc, tmp_path / "run")
        workers = [p for p in psutil.Process(proc.pid).children()
                   if p.cmdline() == psutil.Process(proc.pid).cmdline()]
        assert len(workers) == 2
        left = _kill_and_look(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert left == [], f"still running 2 s after the master was killed: {left}"
