"""The records store's load test (tests/apps/records.py), written as its team would: editors
read and write shared records, some with optimistic locking (If-Match), and append to a
shared feed. Each request says what it did to the store's state (``loadtest.ops``), and
where the store means something HTTP does not say by itself, the scenario says so: a 404
is a read of a record never written. A 409 (a write overtaken) and a 412 (another
version) need nothing: a 4xx wrote nothing, and a compare-and-set answered 409 or 412
compared and failed.
"""

from __future__ import annotations

import itertools
import random

from locust import constant, events, task

from loadtest import harness
from loadtest.ops import operation, saw
from loadtest.shape import PlanShape  # noqa: F401 - Locust finds the shape here
from loadtest.users import ScalecheckHttpUser

harness.install(events, defaults={"counter_field": "none"})
editors = itertools.count(1)
KEYS = ["r0", "r1", "r2", "r3"]  # few, so that writes meet and some conflict
FEED = "news"


class Editor(ScalecheckHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.name = f"editor-{next(editors)}"
        self.sequence = itertools.count(1)

    def _value(self) -> str:
        return f"{self.name}:{next(self.sequence)}"  # unique: each write can be followed

    def _read(self, key: str) -> tuple[object, str | None]:
        """Read a record: (value, its ETag), (None, None) when absent or unknown."""
        with self.client.get(f"/records/{key}", name="/records/[key]", catch_response=True,
                             context=operation("read", key)) as resp:
            if resp.status_code == 200:
                body = resp.json()
                saw(resp, body["value"])
                return body["value"], resp.headers.get("ETag")
            if resp.status_code == 404:  # never written: a read of nothing, not a failure
                saw(resp, None, outcome="ok")
                resp.success()
            return None, None

    @task(3)
    def write(self) -> None:
        key, value = random.choice(KEYS), self._value()
        with self.client.put(f"/records/{key}", json={"value": value}, name="/records/[key]",
                             catch_response=True, context=operation("write", key, value)) \
                as resp:
            if resp.status_code == 409:
                resp.success()  # overtaken, wrote nothing: the store working as designed

    @task(4)
    def read(self) -> None:
        self._read(random.choice(KEYS))

    @task(2)
    def compare_and_set(self) -> None:
        key = random.choice(KEYS)
        current, etag = self._read(key)
        if etag is None:
            return
        value = self._value()
        with self.client.put(f"/records/{key}", json={"value": value},
                             headers={"If-Match": etag}, name="/records/[key] if-match",
                             catch_response=True,
                             context=operation("cas", key, [current, value])) as resp:
            if resp.status_code in (409, 412):
                resp.success()  # compared and failed: an answer, not an error

    @task(2)
    def append(self) -> None:
        item = self._value()
        self.client.post(f"/records/{FEED}/items", json={"item": item},
                         name="/records/[key]/items", context=operation("append", FEED, item))

    @task(1)
    def read_feed(self) -> None:
        with self.client.get(f"/records/{FEED}/items", name="/records/[key]/items",
                             catch_response=True, context=operation("read-list", FEED)) as resp:
            if resp.status_code == 200:
                saw(resp, resp.json()["items"])
