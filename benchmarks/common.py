"""What the benchmark sections share: where things are, timing a child, running Locust and
analyze.py, scratch directories, a percentile and whether a Docker engine answers."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LOCUST = str(Path(PY).parent / "locust")


def run_measured(cmd: list[str], **kwargs: Any) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, proc.returncode


def p95(values: list[float]) -> float:
    """The 95th percentile, nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def free_port() -> int:
    """A port free right now (the stack's own function)."""
    from loadtest.stack.base import free_port as _free

    return _free()


@contextlib.contextmanager
def scratch_dir(prefix: str = "scalecheck-bench-") -> Iterator[Path]:
    """A temporary directory for runs, removed afterwards whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_hello(run_dir: Path, args: list[str], timeout: float = 600,
              env: Mapping[str, str] | None = None) -> None:
    """One headless run of the harness (loadtest/hello.py) into ``run_dir``, on free ports,
    its output discarded; ``env`` replaces the environment when given."""
    subprocess.run([LOCUST, "-f", str(ROOT / "loadtest" / "hello.py"), "--headless",
                    "--only-summary", "--run-dir", str(run_dir), "--stack-port",
                    str(free_port()), "--api-port", str(free_port()), "--loglevel", "WARNING",
                    *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=None if env is None else dict(env), timeout=timeout)


def locust_run(run_dir: Path, args: list[str], timeout: float = 600) -> dict:
    """``run_hello``, then the run's run.json."""
    run_hello(run_dir, args, timeout)
    return json.loads((run_dir / "run.json").read_text())


def analyse(run_dir: Path, baseline: Path | None = None,
            env: Mapping[str, str] | None = None) -> tuple[int, dict]:
    """analyze.py on a run, no report: (exit code, summary.json or {} if none written)."""
    cmd = [PY, str(ROOT / "analyze.py"), str(run_dir), "--no-report", "--quiet"]
    if baseline is not None:
        cmd += ["--baseline", str(baseline)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=None if env is None else dict(env))
    path = run_dir / "summary.json"
    return proc.returncode, json.loads(path.read_text()) if path.exists() else {}


def probed_locust(tmp: str, locustfiles: str, url: str, users: int, extra: list[str],
                  env: Mapping[str, str] | None = None,
                  timeout: float = 300) -> tuple[float, float]:
    """A headless Locust run against ``url`` with benchmarks/cpu_probe.py loaded beside
    ``locustfiles``, its files in ``tmp``: (requests/s, CPU microseconds of the Locust
    process per request between test start and stop). ``env`` defaults to ours."""
    prefix = os.path.join(tmp, "stats")
    probe = os.path.join(tmp, "cpu.json")
    subprocess.run([LOCUST, "-f", f"{locustfiles},benchmarks/cpu_probe.py", "--headless",
                    "-u", str(users), "-r", str(users), "-H", url, "--csv", prefix,
                    "--only-summary", "--loglevel", "WARNING", *extra],
                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**(os.environ if env is None else env), "SCALECHECK_CPU_PROBE": probe},
                   timeout=timeout)
    with open(prefix + "_stats.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    with open(probe) as fh:
        cpu = json.load(fh)
    return float(row["Requests/s"]), cpu["cpu_s"] * 1e6 / max(cpu["requests"], 1)


def docker_answers() -> bool:
    """Whether ``docker info`` succeeds within 20 s."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def scale_up_times(stack, trials: int) -> list[float]:
    """``trials`` scale-ups 1 -> 2 (and back to 1) of a stack that is up at 1: seconds from
    asked to routed. The stack is brought down afterwards, whatever happens."""
    routed = []
    try:
        for _ in range(trials):
            result = stack.scale(2)
            routed.append(result.ready - result.asked)
            stack.scale(1)
    finally:
        stack.down()
    return routed
