"""The merge gate's baseline comparison: false regressions (target 0), a slower build flagged.

    python -m benchmarks.ci [--pairs 10] [--slow-pairs 5] [--stage-time 10s] [--users 8]
                            [--cpu-ms 2]

Pairs of runs of the same commit on the embedded stack (levels 1,2), the
second analysed with the first as ``--baseline``: any failed regression check
is a false regression (target 0). Then pairs whose second run is a build made
slower on purpose (the hello app's ``CPU_MS``: CPU burnt per request): each
should be flagged (a regression check failed). Starts Locust and stacks: run it
under the shared lock, alone on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import analyse, run_hello, scratch_dir


def _env(cpu_ms: float | None = None) -> dict[str, str]:
    """Ours without GITHUB_STEP_SUMMARY (the runs here are no CI step's), with the hello
    app's CPU_MS if given."""
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    if cpu_ms is not None:
        env["CPU_MS"] = str(cpu_ms)
    return env


def _run(run_dir: Path, users: int, stage_time: str, cpu_ms: float) -> None:
    run_hello(run_dir, ["-u", str(users), "-r", str(users), "--scale-levels", "1,2",
                        "--stage-time", stage_time, "--exit-code-on-error", "0"],
              env=_env(cpu_ms))


def _analyse(run_dir: Path, baseline: Path | None = None) -> dict:
    return analyse(run_dir, baseline, env=_env())[1]


def pair(workdir: Path, name: str, users: int, stage_time: str,
         cpu_ms: tuple[float, float]) -> dict:
    """Two runs, the second judged against the first: its regression checks."""
    base, new = workdir / f"{name}-a", workdir / f"{name}-b"
    _run(base, users, stage_time, cpu_ms[0])
    _analyse(base)
    _run(new, users, stage_time, cpu_ms[1])
    summary = _analyse(new, base)
    checks = [c for c in summary.get("checks", []) if c["name"].startswith("regression")]
    out = {"verdict": summary.get("verdict"),
           "failed": [c["name"] for c in checks if c["status"] == "fail"],
           "unclear": [c["name"] for c in checks if c["status"] == "not checked"],
           "findings": [f"{c['evidence'].get('finding')} [{c['status']}]" for c in checks
                        if c.get("evidence") and c["evidence"].get("finding")],
           "compared": len(checks)}
    for path in (base, new):
        shutil.rmtree(path, ignore_errors=True)
    return out


def _print(i: int, result: dict) -> None:
    print(f"  pair {i}: {len(result['failed'])} regression(s), {len(result['unclear'])} "
          f"unclear, of {result['compared']} compared")
    for line in result["findings"]:
        print(f"      {line}")
    sys.stdout.flush()


def bench_baseline_noise(pairs: int = 10, slow_pairs: int = 5, stage_time: str = "10s",
                         users: int = 8, cpu_ms: float = 2.0) -> dict:
    """False regressions over ``pairs`` pairs of the same build, and regressions flagged
    over ``slow_pairs`` pairs where the second build burns ``cpu_ms`` more per request."""
    print(f"== ci: {pairs} pairs of runs of the same build (levels 1,2, {stage_time} each, "
          f"-u {users}), the second against the first as --baseline")
    started = time.perf_counter()
    same, slow = [], []
    with scratch_dir("scalecheck-bench-ci-") as workdir:
        for i in range(pairs):
            same.append(pair(workdir, f"same-{i}", users, stage_time, (0, 0)))
            _print(i, same[-1])
        print(f"== ci: {slow_pairs} pairs, the second build slower on purpose (CPU_MS=0 -> "
              f"{cpu_ms:g})")
        for i in range(slow_pairs):
            slow.append(pair(workdir, f"slow-{i}", users, stage_time, (0, cpu_ms)))
            _print(i, slow[-1])
    false = sum(1 for r in same if r["failed"])
    unclear = sum(1 for r in same if r["unclear"] and not r["failed"])
    flagged = sum(1 for r in slow if r["failed"])
    print(f"  same build: {false} of {pairs} pairs with a false regression (target 0); "
          f"{unclear} with an unclear comparison (inconclusive, not a regression)")
    print(f"  slower build (CPU_MS={cpu_ms:g}): flagged in {flagged} of {slow_pairs} pairs "
          f"(target {slow_pairs}); {time.perf_counter() - started:.0f} s in all")
    return {"false_regressions": false, "unclear": unclear, "flagged": flagged,
            "pairs": pairs, "slow_pairs": slow_pairs, "same": same, "slow": slow}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ci", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--slow-pairs", type=int, default=5)
    parser.add_argument("--stage-time", default="10s")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--cpu-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    bench_baseline_noise(args.pairs, args.slow_pairs, args.stage_time, args.users, args.cpu_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
