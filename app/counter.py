"""Visit counters: the shared state whose consistency the harness checks.

Four modes, chosen by ``COUNTER_MODE``:

- ``atomic``: Redis ``INCR``, sent exactly once; every visit gets a distinct,
  increasing value. If Redis does not answer within ``REDIS_TIMEOUT`` the
  visit has an *unknown* outcome (the INCR may or may not have happened) and
  the page says the counter is unavailable: it is never sent twice.
- ``retrying``: the same ``INCR``, with redis-py's default retry policy (it
  re-sends after a timeout or a dropped connection). A retried INCR whose
  first attempt did reach Redis counts one visit twice: the classic
  non-idempotent retry.
- ``racy``: ``GET`` then ``SET``; two replicas interleaving lose updates and
  hand out the same value twice (the classic read-modify-write bug).
- ``local``: a counter in this process's memory; every replica counts on its
  own (the classic stateful-replica bug).

The faulty modes exist so users can see what the harness catches.
"""

from __future__ import annotations

import itertools
import threading
from typing import Protocol

import redis

MODES = ("atomic", "retrying", "racy", "local")


class Counter(Protocol):
    def increment(self) -> int: ...


class AtomicCounter:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key

    def increment(self) -> int:
        return int(self._client.incr(self._key))


class RacyCounter:
    """Read, add one, write back: correct alone, wrong under concurrency."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self._key = key

    def increment(self) -> int:
        value = int(self._client.get(self._key) or 0) + 1
        self._client.set(self._key, value)
        return value


class LocalCounter:
    """Per-process memory: each replica hands out 1, 2, 3... on its own."""

    def __init__(self) -> None:
        self._values = itertools.count(1)
        self._lock = threading.Lock()

    def increment(self) -> int:
        with self._lock:
            return next(self._values)


def make_counter(mode: str, client: redis.Redis, key: str) -> Counter:
    """The counter for ``mode``; the client's retry policy is the caller's (see create_app)."""
    if mode in ("atomic", "retrying"):
        return AtomicCounter(client, key)
    if mode == "racy":
        return RacyCounter(client, key)
    if mode == "local":
        return LocalCounter()
    raise ValueError(f"COUNTER_MODE must be one of {', '.join(MODES)}, not {mode!r}")
