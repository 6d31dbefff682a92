"""What a request costs the replica: CPU burnt and time waited, both adjustable.

A real app spends CPU on each request (templates, JSON, business rules) and
waits on other services (a database call). ``CPU_MS`` and ``WAIT_MS`` give
the hello app such a cost, so that a replica has a capacity known in advance
(about its CPUs ÷ ``CPU_MS``) and scaling out has something to relieve.
"""

from __future__ import annotations

import time


def spend(cpu_ms: float, wait_ms: float) -> None:
    """Burn ``cpu_ms`` of this thread's CPU time, then sleep ``wait_ms``.

    CPU time, not wall time: on a busy or CPU-limited machine the burn takes
    longer in wall time but costs the same CPU, as real work does.
    """
    if cpu_ms > 0:
        until = time.thread_time() + cpu_ms / 1000.0
        x = 0
        while time.thread_time() < until:
            for _ in range(200):  # a few microseconds between clock reads
                x += 1
    if wait_ms > 0:
        time.sleep(wait_ms / 1000.0)
