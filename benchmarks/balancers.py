"""Traefik vs HAProxy: req/s over one sweep, errors while scaling 4 -> 1; target 0 errors."""

from __future__ import annotations

import statistics

from benchmarks.common import analyse, locust_run, scratch_dir


def bench_balancers(rounds: int = 4) -> None:
    """The same sweep (levels 1,2,4,1, 5 s each, 6 users) through each balancer, A B A B."""
    print("== the same sweep (levels 1,2,4, 5 s each, 6 users) through Traefik and HAProxy, "
          "alternated A B A B; errors during scale-down 4 -> 1 under load")
    rps: dict[str, list[float]] = {"traefik": [], "haproxy": []}
    errors = {"traefik": 0, "haproxy": 0}
    with scratch_dir() as workdir:
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
    ratio = statistics.median(rps["traefik"]) / statistics.median(rps["haproxy"])
    print(f"  requests/s ratio Traefik / HAProxy (medians): {ratio:.3f}")
    print(f"  errors during scale-down 4 -> 1: Traefik {errors['traefik']}, "
          f"HAProxy {errors['haproxy']}  (target 0)")
