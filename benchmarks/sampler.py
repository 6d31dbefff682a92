"""What the CPU sampler costs the load generator; target req/s with / without >= 0.98.

The embedded stack with 2 replicas, a plain FastHttpUser run with and without the
sampler, alternated A B A B.

    python -m benchmarks.sampler [--rounds 4] [--seconds 10] [--users 8]

Run under the shared lock. The sampler reads the replicas from their process trees (no
cgroups), its costlier path. Figures: the requests/s ratio (target >= 0.98), the Locust
process's CPU per request ratio (less noisy), and the sampler's own CPU per reading.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import free_port, probed_locust


def _locust(url: str, users: int, seconds: int, parts: dict | None) -> dict:
    """One Locust run: requests/s, CPU us per request (test start to stop), sampler cost."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sampler.json")
        env = {**os.environ, "SCALECHECK_SAMPLER_OUT": out}
        env.pop("SCALECHECK_SAMPLER_PARTS", None)
        if parts is not None:
            env["SCALECHECK_SAMPLER_PARTS"] = json.dumps(parts)
        rps, cpu_us = probed_locust(
            tmp, "benchmarks/plain_locustfile.py,benchmarks/sampler_probe.py", url, users,
            ["--run-time", f"{seconds}s"], env=env, timeout=seconds + 120)
        sampler = json.loads(Path(out).read_text()) if os.path.exists(out) else None
    return {"rps": rps, "cpu_us": cpu_us, "sampler": sampler}


def _shares(cpu: dict | None) -> dict[str, float]:
    """Median cores used per part (replicas together), idle, and the rest of the machine
    (other programs: this machine is shared)."""
    if not cpu:
        return {}
    n = len(cpu["idle"])
    groups: dict[str, list[float]] = {}
    for name, series in cpu["parts"].items():
        key = "replicas" if name.startswith("replica:") else name
        column = groups.setdefault(key, [0.0] * n)
        for k, value in enumerate(series):
            column[k] += value or 0.0
    groups["idle"] = [v or 0.0 for v in cpu["idle"]]
    groups["other"] = [max(0.0, cpu["cores"] * cpu["interval_s"] -
                           sum(column[k] for column in groups.values())) for k in range(n)]
    return {key: statistics.median(column) for key, column in groups.items() if column}


def bench_sampler(rounds: int = 4, seconds: int = 10, users: int = 8) -> float:
    """Print the figures; return the median requests/s ratio (with / without)."""
    from loadtest.stack.embedded.stack import LocalStack

    print(f"== sampler: a plain FastHttpUser against the embedded stack (2 replicas, Traefik), "
          f"{users} users, {seconds}s each, with and without the CPU sampler, A B A B")
    stack = LocalStack(port=free_port(), api_port=free_port())
    ratios, cpu_ratios, per_reading = [], [], []
    try:
        stack.up(2)
        parts = stack.parts()
        for i in range(rounds):
            with_it = _locust(stack.url, users, seconds, parts)
            without = _locust(stack.url, users, seconds, None)
            ratios.append(with_it["rps"] / without["rps"] if without["rps"] else float("nan"))
            cpu_ratios.append(with_it["cpu_us"] / without["cpu_us"])
            sampled = with_it["sampler"] or {}
            cost = 1000 * sampled.get("own_cpu_s", float("nan")) / max(
                sampled.get("readings", 0), 1)
            per_reading.append(cost)
            shares = _shares(sampled.get("cpu"))
            print(f"  round {i + 1}: with {with_it['rps']:7.0f} req/s "
                  f"({with_it['cpu_us']:4.0f} us CPU/req), without {without['rps']:7.0f} "
                  f"req/s ({without['cpu_us']:4.0f} us CPU/req); sampler {cost:.2f} ms CPU "
                  f"per reading")
            print("    cores used, median per second: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
    finally:
        stack.down()
    ratio = statistics.median(ratios)
    print(f"  median requests/s ratio (with / without) {ratio:.3f}  (target >= 0.98)")
    print(f"  median CPU per request ratio (with / without) {statistics.median(cpu_ratios):.3f}")
    print(f"  sampler's own CPU: median {statistics.median(per_reading):.2f} ms per reading "
          f"({statistics.median(per_reading) / 10:.3f} % of a core at one reading a second)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sampler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--users", type=int, default=8)
    args = parser.parse_args(argv)
    bench_sampler(args.rounds, args.seconds, args.users)
    return 0


if __name__ == "__main__":
    sys.exit(main())
