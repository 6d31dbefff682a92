"""The harness's cost to Locust vs a plain FastHttpUser; target req/s >= 0.95, CPU/req <= 1.05."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import PY, ROOT, free_port, probed_locust


def _locust_rps(locustfile: str, url: str, users: int, extra: list[str]) -> tuple[float, float]:
    """(requests/s, CPU microseconds of the Locust process per request, between test start
    and stop: start-up and shutdown excluded, see benchmarks/cpu_probe.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        return probed_locust(tmp, locustfile, url, users, extra)


class _Stack:
    """python -m loadtest.stack in the background, for the duration of a benchmark."""

    def __init__(self, replicas: int, balancer: str = "haproxy") -> None:
        self.project = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        subprocess.run([PY, "-m", "loadtest.stack", "--project-dir", str(self.project), "up",
                        "-d", "--scale", str(replicas), "--stack-port", str(self.port),
                        "--balancer", balancer, "--api-port", str(free_port())], check=True,
                       cwd=ROOT,
                       stdout=subprocess.DEVNULL)

    def close(self) -> None:
        subprocess.run([PY, "-m", "loadtest.stack", "--project-dir", str(self.project), "down"],
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        shutil.rmtree(self.project, ignore_errors=True)


def bench_collector(rounds: int = 4, seconds: int = 10, users: int = 8) -> None:
    """The harness (loadtest/hello.py, recording) against a plain FastHttpUser on the same
    stack (2 replicas, HAProxy), alternated A B A B: req/s and CPU per request ratios."""
    print(f"== collector: the harness (loadtest/hello.py, recording) against a plain "
          f"FastHttpUser, {users} users, {seconds}s each, alternated A B A B")
    stack = _Stack(2)
    ratios, cpu_ratios = [], []
    try:
        for i in range(rounds):
            with tempfile.TemporaryDirectory() as run_dir:
                harness, harness_cpu = _locust_rps(
                    "loadtest/hello.py", stack.url, users,
                    ["--stack", "external", "--stage-time", f"{seconds}s",
                     "--run-dir", os.path.join(run_dir, "r")])
            plain, plain_cpu = _locust_rps("benchmarks/plain_locustfile.py", stack.url, users,
                                           ["--run-time", f"{seconds}s"])
            ratios.append(harness / plain if plain else float("nan"))
            cpu_ratios.append(harness_cpu / plain_cpu if plain_cpu else float("nan"))
            print(f"  round {i + 1}: harness {harness:7.0f} req/s ({harness_cpu:4.0f} us CPU/req), "
                  f"plain {plain:7.0f} req/s ({plain_cpu:4.0f} us CPU/req)")
    finally:
        stack.close()
    print(f"  median requests/s ratio (harness / plain) {statistics.median(ratios):.3f}"
          "  (target >= 0.95)")
    print(f"  median CPU per request ratio (harness / plain) {statistics.median(cpu_ratios):.3f}"
          "  (target <= 1.05; the load generator's own cost, less noisy than req/s)")
