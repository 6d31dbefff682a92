"""A Locust plugin for the collector benchmark: the process's CPU time and the requests
made between test start and test stop, written to $SCALECHECK_CPU_PROBE as JSON.

Loaded beside a locustfile (``-f loadtest/hello.py,benchmarks/cpu_probe.py``) so that
start-up and shutdown (imports, the stack, the last flush) do not count: what is left
is the cost of making and recording requests.
"""

from __future__ import annotations

import json
import os

import psutil
from locust import events

_start: dict = {}


def _cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


@events.test_start.add_listener
def _(environment, **_kwargs):
    _start.update(cpu=_cpu(), requests=environment.stats.total.num_requests)


@events.test_stop.add_listener
def _(environment, **_kwargs):
    path = os.environ.get("SCALECHECK_CPU_PROBE")
    if not path or not _start:
        return
    requests = environment.stats.total.num_requests - _start["requests"]
    with open(path, "w") as fh:
        json.dump({"cpu_s": _cpu() - _start["cpu"], "requests": requests}, fh)
