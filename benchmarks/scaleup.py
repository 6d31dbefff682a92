"""Embedded stack: scale(n+1) asked to first request the new replica serves; target p95 <= 1 s."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request

from benchmarks.common import free_port, p95


def _scaleup_delays(balancer: str, trials: int) -> list[float]:
    from loadtest.stack.embedded.stack import LocalStack

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
    """``trials`` scale-ups 1 -> 2 under load (4 threads), through Traefik then HAProxy."""
    print(f"== scale-up latency of the embedded stack: scale(n+1) called -> first request "
          f"served by the new replica, under load, {trials} trials each")
    for balancer in ("traefik", "haproxy"):
        delays = _scaleup_delays(balancer, trials)
        print(f"  {balancer:8} median {statistics.median(delays):.3f}s, p95 {p95(delays):.3f}s, "
              f"max {max(delays):.3f}s  (target p95 <= 1 s)")
