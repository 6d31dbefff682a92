"""make bench: analysis speed and memory, collector overhead, scale-up latency.

    python -m benchmarks [analysis] [collector] [scaleup] [--large]

Every comparison is a ratio measured in the same run (these machines are
shared and noisy); absolute numbers are printed for the record only.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LOCUST = str(Path(PY).parent / "locust")


def run_measured(cmd: list[str], **kwargs) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, proc.returncode


def bench_analysis(large: bool) -> None:
    sizes = [100_000, 1_000_000] + ([4_000_000, 10_000_000] if large else [])
    print("== analysis: synthetic runs, all checks and the full report (python analyze.py)")
    print(f"{'requests':>11} {'seconds':>8} {'peak MB':>8} {'bytes/req':>9}  target")
    workdir = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
    try:
        for n in sizes:
            out = workdir / f"run-{n}"
            subprocess.run([PY, "-m", "loadtest.synth", "--requests", str(n), "--out", str(out),
                            "--levels", "1,2,4,8"], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
            seconds, peak, code = run_measured([PY, str(ROOT / "analyze.py"), str(out),
                                                "--quiet"], cwd=ROOT)
            target = {1_000_000: "<= 15 s, <= 1536 MB",
                      10_000_000: "memory flat from 4M to 10M"}.get(n, "")
            print(f"{n:>11,} {seconds:>8.1f} {peak:>8.0f} {peak * 2**20 / n:>9.0f}  {target}"
                  + ("" if code in (0, 1) else f"  (exit {code})"))
            shutil.rmtree(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _locust_rps(locustfile: str, url: str, users: int, seconds: int,
                extra: list[str]) -> tuple[float, float]:
    """(requests/s, CPU microseconds of the Locust process per request)."""
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "stats")
        proc = subprocess.Popen([LOCUST, "-f", locustfile, "--headless", "-u", str(users), "-r",
                                 str(users), "-H", url, "--csv", prefix, "--only-summary",
                                 "--loglevel", "WARNING", *extra],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, _, usage = os.wait4(proc.pid, 0)
        with open(prefix + "_stats.csv") as fh:
            row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
        requests = max(int(row["Request Count"]), 1)
        cpu_us = (usage.ru_utime + usage.ru_stime) * 1e6 / requests
        return float(row["Requests/s"]), cpu_us


def _stack_up(project: Path, replicas: int, port: int) -> None:
    subprocess.run([PY, "-m", "loadtest.stack", "--project-dir", str(project), "up", "-d",
                    "--scale", str(replicas), "--port", str(port)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)


def _stack_down(project: Path) -> None:
    subprocess.run([PY, "-m", "loadtest.stack", "--project-dir", str(project), "down"],
                   cwd=ROOT, stdout=subprocess.DEVNULL)


def bench_collector(rounds: int = 4, seconds: int = 10, users: int = 8) -> None:
    from loadtest.stack.base import free_port

    print(f"== collector overhead: requests/s with the harness (loadtest/hello.py, recording) vs "
          f"a plain FastHttpUser, {users} users, {seconds}s each, alternated A B A B")
    project = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ratios, cpu_ratios = [], []
    try:
        _stack_up(project, 2, port)
        for i in range(rounds):
            with tempfile.TemporaryDirectory() as run_dir:
                harness, harness_cpu = _locust_rps(
                    "loadtest/hello.py", url, users, seconds,
                    ["--stack", "external", "--stage-time", f"{seconds}s",
                     "--run-dir", os.path.join(run_dir, "r")])
            plain, plain_cpu = _locust_rps("benchmarks/plain_locustfile.py", url, users, seconds,
                                           ["--run-time", f"{seconds}s"])
            ratios.append(harness / plain if plain else float("nan"))
            cpu_ratios.append(plain_cpu / harness_cpu if harness_cpu else float("nan"))
            print(f"  round {i + 1}: harness {harness:7.0f} req/s ({harness_cpu:4.0f} us CPU/req), "
                  f"plain {plain:7.0f} req/s ({plain_cpu:4.0f} us CPU/req), "
                  f"rps ratio {ratios[-1]:.3f}")
    finally:
        _stack_down(project)
        shutil.rmtree(project, ignore_errors=True)
    print(f"  median requests/s ratio {statistics.median(ratios):.3f}  (target >= 0.95)")
    print(f"  median CPU-per-request ratio (plain / harness) {statistics.median(cpu_ratios):.3f}"
          "  (the load generator's own cost; less noisy than req/s on a shared machine)")


def bench_scaleup(trials: int = 12) -> None:
    from loadtest.stack.base import free_port
    from loadtest.stack.local import LocalStack

    print(f"== scale-up latency of the embedded stack: scale(n+1) called -> first request "
          f"served by the new replica, under load, {trials} trials")
    stack = LocalStack(port=free_port())
    seen: dict[str, float] = {}
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 600
        req = urllib.request.Request(stack.url, headers={"Accept": "application/json"})
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    name = resp.headers.get("X-Served-By")
                    seen.setdefault(name, time.time())
            except OSError:
                time.sleep(0.01)

    delays = []
    try:
        stack.up(1)
        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        for _ in range(trials):
            asked = time.time()
            result = stack.scale(2)
            name = result.added[0]
            deadline = time.monotonic() + 10
            while name not in seen and time.monotonic() < deadline:
                time.sleep(0.002)
            delays.append(seen.get(name, float("inf")) - asked)
            stack.scale(1)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        stop.set()
        stack.down()
    delays.sort()
    p95 = delays[max(0, int(round(0.95 * len(delays))) - 1)]
    print(f"  median {statistics.median(delays):.3f}s, p95 {p95:.3f}s, max {delays[-1]:.3f}s "
          f"(target p95 < 1 s)")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("which", nargs="*", choices=["analysis", "collector", "scaleup"],
                        default=[])
    parser.add_argument("--large", action="store_true", help="also analyse 10,000,000 requests")
    args = parser.parse_args()
    which = args.which or ["analysis", "collector", "scaleup"]
    if "analysis" in which:
        bench_analysis(args.large)
    if "scaleup" in which:
        bench_scaleup()
    if "collector" in which:
        bench_collector()
    return 0


if __name__ == "__main__":
    sys.exit(main())
