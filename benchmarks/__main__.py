"""make bench: what scalecheck costs and how fast the stacks react, with figures.

    python -m benchmarks [analysis] [collector] [scaleup] [balancers] [compose] [arrivals]
                         [autoscaler] [soak] [ci] [--large]

Every comparison is a ratio measured in the same run (these machines are shared and
noisy); absolute numbers are printed for the record only. With no names, all run
(compose only where a Docker engine answers).
"""

from __future__ import annotations

import argparse
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

from benchmarks.common import (
    PY,
    ROOT,
    analyse,
    docker_answers,
    free_port,
    locust_run,
    p95,
    probed_locust,
    run_measured,
)

SECTIONS = ("analysis", "collector", "scaleup", "balancers", "compose", "arrivals",
            "autoscaler", "soak", "ci", "sampler", "state")


# -- analysis ---------------------------------------------------------------------------

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
                  + ("" if code in (0, 1, 3) else f"  (exit {code})"))
            shutil.rmtree(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- the collector's cost ----------------------------------------------------------------

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
                        "-d", "--scale", str(replicas), "--port", str(self.port), "--balancer",
                        balancer, "--api-port", str(free_port())], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)

    def close(self) -> None:
        subprocess.run([PY, "-m", "loadtest.stack", "--project-dir", str(self.project), "down"],
                       cwd=ROOT, stdout=subprocess.DEVNULL)
        shutil.rmtree(self.project, ignore_errors=True)


def bench_collector(rounds: int = 4, seconds: int = 10, users: int = 8) -> None:
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


# -- scaling the embedded stack ------------------------------------------------------------

def _scaleup_delays(balancer: str, trials: int) -> list[float]:
    from loadtest.stack.local import LocalStack

    stack = LocalStack(port=free_port(), balancer=balancer, api_port=free_port())
    seen: dict[str, float] = {}
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 600
        req = urllib.request.Request(stack.url, headers={"Accept": "application/json"})
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    seen.setdefault(resp.headers.get("X-Served-By"), time.time())
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
            name = stack.scale(2).added[0]
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
    return delays


def bench_scaleup(trials: int = 12) -> None:
    print(f"== scale-up latency of the embedded stack: scale(n+1) called -> first request "
          f"served by the new replica, under load, {trials} trials each")
    for balancer in ("traefik", "haproxy"):
        delays = _scaleup_delays(balancer, trials)
        print(f"  {balancer:8} median {statistics.median(delays):.3f}s, p95 {p95(delays):.3f}s, "
              f"max {max(delays):.3f}s  (target p95 <= 1 s)")


def bench_balancers(rounds: int = 4) -> None:
    print("== the same sweep (levels 1,2,4, 5 s each, 6 users) through Traefik and HAProxy, "
          "alternated A B A B; errors during scale-down 4 -> 1 under load")
    rps = {"traefik": [], "haproxy": []}
    errors = {"traefik": 0, "haproxy": 0}
    workdir = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
    try:
        for i in range(rounds):
            for balancer in ("traefik", "haproxy"):
                run_dir = workdir / f"{balancer}-{i}"
                run = locust_run(run_dir, ["-u", "6", "-r", "6", "--balancer", balancer,
                                           "--scale-levels", "1,2,4,1", "--stage-time", "5s"])
                _, summary = analyse(run_dir)
                steady = [lv for lv in summary.get("levels", []) if lv["level"] in (1, 2, 4)]
                rps[balancer].append(sum(lv["requests"] for lv in steady) /
                                     max(sum(lv["seconds"] for lv in steady), 1e-9))
                down = [t for t in summary.get("transitions", []) if t["level"] == 1
                        and (t["previous"] or 0) > 1]
                errors[balancer] += sum(t["errors"] for t in down)
                print(f"  round {i + 1} {balancer:8} {rps[balancer][-1]:7.0f} req/s (steady), "
                      f"{run['totals']['recorded']:,} requests")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = statistics.median(rps["traefik"]) / statistics.median(rps["haproxy"])
    print(f"  requests/s ratio Traefik / HAProxy (medians): {ratio:.3f}")
    print(f"  errors during scale-down 4 -> 1: Traefik {errors['traefik']}, "
          f"HAProxy {errors['haproxy']}  (target 0)")


def bench_compose(trials: int = 5) -> None:
    from loadtest.stack import StackError
    from loadtest.stack.compose import ComposeStack

    print(f"== Compose with Traefik (Docker provider): --scale asked -> routed, {trials} trials")
    stack = ComposeStack(port=free_port(), balancer="traefik", api_port=free_port())
    try:
        stack.up(1)
    except StackError as exc:
        print(f"  skipped: {exc} (make docker-images builds the images; dockerd must run)")
        stack.down()
        return
    routed = []
    try:
        for _ in range(trials):
            result = stack.scale(2)
            routed.append(result.ready - result.asked)
            stack.scale(1)
    finally:
        stack.down()
    print(f"  median {statistics.median(routed):.2f}s, p95 {p95(routed):.2f}s "
          "(most of it is Docker's health check: start period and interval)")


# -- the open model and the autoscaler --------------------------------------------------------

def bench_arrivals(rates=(200, 400, 800, 1600), seconds: int = 8) -> None:
    print(f"== open model: offered vs achieved arrival rate against 2 replicas, {seconds}s each")
    workdir = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
    try:
        for rate in rates:
            run_dir = workdir / f"open-{rate}"
            run = locust_run(run_dir, ["--arrival-rate", str(rate), "--scale-levels", "2",
                                       "--stage-time", f"{seconds}s"])
            sent = run["totals"]["recorded"]
            dropped = (run.get("dropped_arrivals") or {}).get("total", 0)
            print(f"  offered {rate:5d}/s: achieved {sent / seconds:7.0f}/s "
                  f"({sent / (rate * seconds):.2f} of offered), dropped {dropped:,}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_autoscaler(periods=(2, 4)) -> None:
    print("== autoscaler reaction: load step 40 -> 300 req/s at 10 s -> first scale-up "
          "asked, HPA on rps (target 100), against its period")
    workdir = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
    try:
        for period in periods:
            run_dir = workdir / f"hpa-{period}"
            run = locust_run(run_dir, [
                "--load-model", "open", "--load-profile", "0s:40,10s:40,10.1s:300,25s:300",
                "--autoscale", "hpa", "--autoscale-metric", "rps", "--autoscale-target", "100",
                "--max-replicas", "4", "--autoscale-period", f"{period}s",
                "--scale-down-window", "30s"])
            t0 = run["test_started"]
            asked = [e["t"] for e in run["stack_events"] if e["event"] == "scale_asked"
                     and e.get("by") == "autoscaler" and e["t"] - t0 >= 10]
            ready = [e["t"] for e in run["stack_events"] if e["event"] == "scale_ready"
                     and e["t"] - t0 >= 10]
            react = asked[0] - t0 - 10 if asked else float("nan")
            routed = ready[0] - t0 - 10 if ready else float("nan")
            print(f"  period {period}s: asked {react:.2f}s after the step "
                  f"({react / period:.2f} periods), routed after {routed:.2f}s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_soak(runs: int = 20) -> None:
    print(f"== soak: {runs} consecutive clean runs (levels 1,2,4, 3 s each, 4 users), "
          "counting false alarms (any verdict but pass)")
    workdir = Path(tempfile.mkdtemp(prefix="scalecheck-bench-"))
    alarms = []
    try:
        for i in range(runs):
            run_dir = workdir / f"soak-{i}"
            locust_run(run_dir, ["-u", "4", "-r", "4", "--scale-levels", "1,2,4",
                                 "--stage-time", "3s"])
            code, summary = analyse(run_dir)
            if code != 0:
                failed = [c["name"] for c in summary.get("checks", [])
                          if c["status"] in ("fail", "not checked")]
                alarms.append((i, summary.get("verdict"), failed))
            shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"  false alarms: {len(alarms)} of {runs}  (target 0)")
    for i, verdict, failed in alarms:
        print(f"    run {i}: {verdict}: {', '.join(failed)}")


def bench_ci() -> None:
    """The baseline comparison's false regressions and a slower build flagged
    (benchmarks/ci.py)."""
    from benchmarks.ci import bench_baseline_noise

    bench_baseline_noise()


def bench_sampler() -> None:
    """The CPU sampler's cost: req/s with and without it (benchmarks/sampler.py)."""
    from benchmarks.sampler import bench_sampler as run

    run()


def bench_state() -> None:
    """The register checker on 100,000 and 400,000 operations (benchmarks/state.py)."""
    from benchmarks.state import bench_state as run

    run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", metavar="SECTION",
                        help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--large", action="store_true", help="also analyse 10,000,000 requests")
    args = parser.parse_args(argv)
    unknown = [w for w in args.which if w not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(SECTIONS)}")
    which = args.which or list(SECTIONS)
    for name in which:
        if name == "analysis":
            bench_analysis(args.large)
        elif name == "compose" and not docker_answers():
            print("== compose: skipped: no Docker engine answers (start dockerd; "
                  "make docker-images)")
        else:
            globals()[f"bench_{name}"]()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
