"""The locustfile: GET / of the hello app, across scale levels.

    locust -f loadtest/hello.py --headless -u 10 -r 10 --scale-levels 1,2,4 --stage-time 20s

``HelloUser`` asks for JSON so every response says which replica served it
and what counter value it saw; the collector records both for every request.
The ``ScaleLevels`` shape rescales the stack between stages. Options of the
harness are listed under "scalecheck" in ``locust --help``.
"""

from __future__ import annotations

import itertools
import os
import sys

# Run as ``locust -f loadtest/hello.py`` from anywhere: make the package importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from locust import between, constant, constant_throughput, events, task  # noqa: E402
from locust.contrib.fasthttp import FastHttpUser  # noqa: E402

from loadtest import harness  # noqa: E402
from loadtest.shape import ScaleLevels  # noqa: E402, F401 - Locust picks the shape up from here

harness.install(events)
_user_ids = itertools.count(1)
_ = between  # re-exported for users who copy this file and want think time


class HelloUser(FastHttpUser):
    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.user_id = next(_user_ids)
        rate = getattr(environment.parsed_options, "rate_per_user", 0) or 0
        self._wait = constant_throughput(rate) if rate > 0 else constant(0)

    def wait_time(self):
        return self._wait(self)

    def context(self) -> dict:
        return {"user": self.user_id}

    @task
    def hello(self) -> None:
        self.client.get("/", headers={"Accept": "application/json"}, name="/")
