"""HPA on rps: load step to first scale-up asked, against the HPA's period; no target."""

from __future__ import annotations

from benchmarks.common import locust_run, scratch_dir


def bench_autoscaler(periods: tuple[float, ...] = (2, 4)) -> None:
    """A step 40 -> 300 req/s at 10 s, one run per autoscaler period (target 100 rps)."""
    print("== autoscaler reaction: load step 40 -> 300 req/s at 10 s -> first scale-up "
          "asked, HPA on rps (target 100), against its period")
    with scratch_dir() as workdir:
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
