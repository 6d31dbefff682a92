"""The locustfile for the hello app's state: keys, sets, counters, lists and sessions,
checked Jepsen-style.

    locust -f loadtest/state.py --headless -u 12 -r 12 --scale-levels 1,3,2 --stage-time 20s
    KV_MODE=cached SESSION_MODE=memory locust -f loadtest/state.py ...   # the faulty modes
    TALLY_MODE=racy LIST_MODE=racy locust -f loadtest/state.py ...        # lost adds, appends

The same options as ``loadtest/hello.py``. Each user logs in once, then writes values of
its own to a few shared keys (unique: the user and a sequence number), reads them back,
adds elements to a shared set and reads it all, adds to a shared counter and reads it,
appends to a shared list and reads it in order, and asks who it is. Every request says
what it did to the app's state (``loadtest.ops``); each user is one client, with nothing
to declare. ``analyze.py`` checks the history: linearizability of each key, the session
guarantees, lost and stale elements, counters within their adds' bounds, lists in one
order, and sessions honoured by every replica.
"""

from __future__ import annotations

import itertools
import random

from locust import constant, events, task

# ``loadtest`` is imported from the install (make setup: pip install -e .), from wherever
# Locust is started: no sys.path edit, which would put the repo root, and its app/, first.
try:
    from loadtest import harness
except ModuleNotFoundError as exc:  # a Locust from outside the project's venv
    if exc.name != "loadtest":
        raise
    raise SystemExit("scalecheck: loadtest is not installed in this Python: run make setup "
                     "and the venv's locust (.venv/bin/locust)") from None
from loadtest.ops import operation, saw
from loadtest.shape import PlanShape  # noqa: F401 - Locust picks the shape up from here
from loadtest.users import ScalecheckHttpUser

harness.install(events, defaults={"counter_field": "none"})  # state, not a visit counter
_user_ids = itertools.count(1)
KEYS = [f"k{n}" for n in range(8)]   # shared by every user: concurrent writers and readers
SETS = ["log"]
TALLIES = ["likes"]
LISTS = ["events"]
JSON = {"Accept": "application/json"}


def _json(resp) -> dict:
    try:
        body = resp.json()
        return body if isinstance(body, dict) else {}
    except ValueError:
        return {}


class StateUser(ScalecheckHttpUser):
    wait_time = constant(0)

    def _read_whole(self, path: str, name: str, f: str, key: str) -> None:
        """GET a whole set, counter or list: a 200's ``value`` is what operation ``f`` saw
        (any other answer leaves it unknown, Locust counting the failure as usual)."""
        with self.client.get(path, headers=JSON, name=name, catch_response=True,
                             context=operation(f, key)) as resp:
            if resp.status_code == 200:
                saw(resp, _json(resp).get("value"))

    def on_start(self) -> None:
        self.user_id = next(_user_ids)
        self.name = f"user-{self.user_id}"
        self.sequence = itertools.count(1)
        self.client.post("/login", json={"user": self.name}, headers=JSON, name="/login",
                         context=operation("login", value=self.name))

    @task(3)
    def write(self) -> None:
        key = random.choice(KEYS)
        value = f"{self.name}:{next(self.sequence)}"  # unique: the checkers need no guess
        self.client.put(f"/kv/{key}", json=value, headers=JSON, name="/kv write",
                        context=operation("write", key, value))

    @task(5)
    def read(self) -> None:
        key = random.choice(KEYS)
        with self.client.get(f"/kv/{key}", headers=JSON, name="/kv read", catch_response=True,
                             context=operation("read", key)) as resp:
            if resp.status_code == 200:
                saw(resp, _json(resp).get("value"))
            resp.success() if resp.status_code == 200 else resp.failure(
                f"HTTP {resp.status_code}")

    @task(2)
    def add(self) -> None:
        key = random.choice(SETS)
        element = f"{self.name}:{next(self.sequence)}"
        self.client.post(f"/set/{key}", json=element, headers=JSON, name="/set add",
                         context=operation("add", key, element))

    @task(1)
    def read_all(self) -> None:
        key = random.choice(SETS)
        self._read_whole(f"/set/{key}", "/set read", "read-all", key)

    @task(2)
    def incr(self) -> None:
        key = random.choice(TALLIES)
        n = random.randint(1, 3)
        self.client.post(f"/tally/{key}", json=n, headers=JSON, name="/tally add",
                         context=operation("incr", key, n))

    @task(2)
    def read_counter(self) -> None:
        key = random.choice(TALLIES)
        self._read_whole(f"/tally/{key}", "/tally read", "read-counter", key)

    @task(2)
    def append(self) -> None:
        key = random.choice(LISTS)
        element = f"{self.name}:{next(self.sequence)}"
        self.client.post(f"/list/{key}", json=element, headers=JSON, name="/list append",
                         context=operation("append", key, element))

    @task(1)
    def read_list(self) -> None:
        key = random.choice(LISTS)
        self._read_whole(f"/list/{key}", "/list read", "read-list", key)

    @task(2)
    def me(self) -> None:
        with self.client.get("/me", headers=JSON, name="/me", catch_response=True,
                             context=operation("session")) as resp:
            saw(resp, _json(resp).get("user"))
            if resp.status_code == 401:
                resp.success()  # the answer is the checkers' to judge, not Locust's error
