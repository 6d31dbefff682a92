"""Open model: achieved vs offered arrival rate against 2 replicas, drops counted; no target."""

from __future__ import annotations

from benchmarks.common import locust_run, scratch_dir


def bench_arrivals(rates: tuple[int, ...] = (200, 400, 800, 1600), seconds: int = 8) -> None:
    """One run per offered rate (``--arrival-rate``), ``seconds`` long, 2 replicas."""
    print(f"== open model: offered vs achieved arrival rate against 2 replicas, {seconds}s each")
    with scratch_dir() as workdir:
        for rate in rates:
            run_dir = workdir / f"open-{rate}"
            run = locust_run(run_dir, ["--arrival-rate", str(rate), "--scale-levels", "2",
                                       "--stage-time", f"{seconds}s"])
            sent = run["totals"]["recorded"]
            dropped = (run.get("dropped_arrivals") or {}).get("total", 0)
            print(f"  offered {rate:5d}/s: achieved {sent / seconds:7.0f}/s "
                  f"({sent / (rate * seconds):.2f} of offered), dropped {dropped:,}")
