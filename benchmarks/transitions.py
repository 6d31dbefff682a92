"""Requests cut at scale changes: sweeps 1 -> 3 -> 2 -> 4 -> 1 under load on every backend
and balancer, the requests cut at each change as analyze.py judges it; target 0 everywhere.

Each backend gets one run whose levels are ``sweeps`` sweeps back to back (4 changes a
sweep). The Docker backends run only where an engine answers and the images are built
(``make docker-images``); otherwise they are reported as skipped, with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

from benchmarks.common import analyse, docker_answers, locust_run, scratch_dir

# (name, harness options, stage length): Docker's scale-downs take seconds (drain, stop,
# remove), so its stages are longer, and each level still holds steady after its change.
BACKENDS = (
    ("local traefik", ["--balancer", "traefik"], "4s"),
    ("local haproxy", ["--balancer", "haproxy"], "4s"),
    ("compose traefik", ["--stack", "compose", "--balancer", "traefik"], "8s"),
    ("compose haproxy", ["--stack", "compose", "--balancer", "haproxy"], "8s"),
    ("swarm traefik", ["--stack", "swarm"], "8s"),
)
SWEEP = (3, 2, 4, 1)


def sweep_levels(sweeps: int) -> str:
    """1, then ``sweeps`` times 3,2,4,1: the --scale-levels of the run."""
    return ",".join(str(n) for n in (1, *SWEEP * sweeps))


def cut_by_change(transitions: list[dict]) -> dict[str, list[int]]:
    """'from -> to' -> the requests cut at each such change, in order (plain data)."""
    cuts: dict[str, list[int]] = defaultdict(list)
    for t in transitions:
        if t.get("previous") is None:
            continue  # the first level: no change
        cuts[f"{t['previous']} -> {t['level']}"].append(int(t["cut"]))
    return dict(cuts)


def bench_transitions(sweeps: int = 10, only: tuple[str, ...] = ()) -> None:
    """Every backend (or those named in ``only``): ``sweeps`` sweeps under 4 users, then
    the cut at each change and every request that failed in the run. A run whose verdict
    is not a pass is copied to $SCALECHECK_BENCH_KEEP/NAME when that is set."""
    print(f"== requests cut at scale changes: {sweeps} sweeps 1 -> 3 -> 2 -> 4 -> 1 under "
          "load (4 users) per backend and balancer  (target 0 everywhere)")
    docker = docker_answers()
    with scratch_dir() as workdir:
        for name, options, stage in BACKENDS:
            if only and name not in only:
                continue
            if not name.startswith("local") and not docker:
                print(f"  {name:16} skipped: no Docker engine answers (start dockerd; "
                      "make docker-images)")
                continue
            run_dir = workdir / name.replace(" ", "-")
            try:
                run = locust_run(run_dir, ["-u", "4", "-r", "4", *options, "--scale-levels",
                                           sweep_levels(sweeps), "--stage-time", stage],
                                 timeout=600 + 40 * sweeps * 4)
            except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                print(f"  {name:16} no run: {type(exc).__name__}: {exc}")
                continue
            if run.get("status") != "completed":
                print(f"  {name:16} run {run.get('status')}: {run.get('error') or run_dir}")
                continue
            code, summary = analyse(run_dir)
            cuts = cut_by_change(summary.get("transitions", []))
            total = sum(sum(v) for v in cuts.values())
            changes = sum(len(v) for v in cuts.values())
            by_kind = ", ".join(f"{kind}: {sum(v)} in {sum(1 for c in v if c)} of {len(v)}"
                                for kind, v in sorted(cuts.items()))
            others = ", ".join(f"{c['name']} {c['status']}" for c in summary.get("checks", [])
                               if c["status"] in ("fail", "not checked"))
            failed = summary.get("totals", {}).get("locust_failures", "?")
            print(f"  {name:16} {run['totals']['recorded']:>7,} requests, {changes} changes, "
                  f"cut {total}  ({by_kind}); failed in the whole run {failed}; "
                  f"analyze.py exit {code}" + (f" ({others})" if others else ""))
            if code != 0 and os.environ.get("SCALECHECK_BENCH_KEEP"):
                kept = Path(os.environ["SCALECHECK_BENCH_KEEP"]) / run_dir.name
                shutil.copytree(run_dir, kept, dirs_exist_ok=True)
                print(f"  {'':16} kept in {kept}")
