"""False alarms (any verdict but pass) over consecutive clean runs; target 0 of 20."""

from __future__ import annotations

import shutil

from benchmarks.common import analyse, locust_run, scratch_dir


def bench_soak(runs: int = 20) -> None:
    """``runs`` clean runs (levels 1,2,4, 3 s each, 4 users), each analysed."""
    print(f"== soak: {runs} consecutive clean runs (levels 1,2,4, 3 s each, 4 users), "
          "counting false alarms (any verdict but pass)")
    alarms = []
    with scratch_dir() as workdir:
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
    print(f"  false alarms: {len(alarms)} of {runs}  (target 0)")
    for i, verdict, failed in alarms:
        print(f"    run {i}: {verdict}: {', '.join(failed)}")
