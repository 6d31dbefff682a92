"""The locustfile: GET / (or --request-path) of the hello app, or of yours, rescaled,
autoscaled, faulted.

    locust -f loadtest/hello.py --headless -u 10 -r 10 --scale-levels 1,2,4 --stage-time 20s

``HelloUser`` asks for JSON so every response says which replica served it
and what counter value it saw; the collector records both for every request.
The ``PlanShape`` asks the run plan for the load; the harness does the rest.
The harness's options: ``scalecheck options`` (also in Locust's web UI).
"""

from __future__ import annotations

import itertools

from locust import between, constant, constant_throughput, events, task

# ``loadtest`` is imported from the install (make setup: pip install -e .), from wherever
# Locust is started: no sys.path edit, which would put the repo root, and its app/, first.
try:
    from loadtest import harness
except ModuleNotFoundError as exc:  # a Locust from outside the project's venv
    if exc.name != "loadtest":
        raise
    raise SystemExit("scalecheck: loadtest is not installed in this Python: run make setup "
                     "and the venv's locust (.venv/bin/locust)") from None
from loadtest.shape import PlanShape  # noqa: F401 - Locust picks the shape up from here
from loadtest.users import ScalecheckHttpUser

harness.install(events)
_user_ids = itertools.count(1)
_ = between  # re-exported for users who copy this file and want think time
HEADERS = {"Accept": "application/json"}


class HelloUser(ScalecheckHttpUser):
    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.user_id = next(_user_ids)
        rate = getattr(environment.parsed_options, "rate_per_user", 0) or 0
        self._wait = constant_throughput(rate) if rate > 0 else constant(0)
        self._context = {"user": self.user_id}
        path = getattr(environment.parsed_options, "request_path", None) or "/"
        self.path = path if path.startswith("/") else f"/{path}"

    def wait_time(self):
        return self._wait(self)

    def context(self) -> dict:
        return self._context

    @task
    def hello(self) -> None:
        arrivals = harness.arrivals(self.environment)
        if arrivals is None:  # closed model: send, wait for the answer, send again
            self.client.get(self.path, headers=HEADERS, name=self.path)
        else:  # open model: take the next arrival at its time
            intended = arrivals.next()
            if intended is not None:  # None: nothing came; the user may be stopping
                self.client.get(self.path, headers=HEADERS, name=self.path,
                                context={"intended": intended})
