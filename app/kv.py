"""Keyed data, as a real app keeps its carts and settings: a value per key (a register)
and an append-only list per key, in Redis, read directly or through a cache.

Two modes, chosen by ``KV_MODE``:

- ``redis``: every read and write goes to Redis (``GET``/``SET``, ``RPUSH``/``LRANGE``),
  sent exactly once: a Redis that does not answer within ``REDIS_TIMEOUT`` gives a 503
  whose write may or may not have taken effect, never a retried command.
- ``cached``: reads go through a cache in this replica's memory, kept ``KV_CACHE_TTL``
  seconds (default 2). A write goes to Redis and refreshes only this replica's copy:
  the other replicas keep serving the old value until their copy expires (the classic
  stale read of a per-replica cache). The faulty mode, so users can see what the
  harness catches.

Routes (every answer names the replica, in the body and in ``X-Served-By``):
``PUT /kv/<key>`` (body: the value, JSON) and ``GET /kv/<key>`` answer
``{"key", "value", "hostname"}`` (``value`` null when the key was never written);
``POST /set/<key>`` (body: one element, JSON) appends it and answers
``{"key", "value": element, "length", "hostname"}``; ``GET /set/<key>`` answers
``{"key", "value": [elements in the order added], "hostname"}``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Protocol

import redis
from flask import Blueprint, request

from .replies import Answer

MODES = ("redis", "cached")
CACHE_ENTRIES = 10_000  # per replica; the oldest copies go first beyond this


class Store(Protocol):
    def get(self, key: str) -> object: ...
    def put(self, key: str, value: object) -> None: ...
    def add(self, key: str, element: object) -> int: ...
    def members(self, key: str) -> list: ...


class RedisStore:
    """Values and lists in Redis, as JSON text."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def get(self, key: str) -> object:
        raw = self._client.get(f"kv:{key}")
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: object) -> None:
        self._client.set(f"kv:{key}", json.dumps(value))

    def add(self, key: str, element: object) -> int:
        return int(self._client.rpush(f"set:{key}", json.dumps(element)))

    def members(self, key: str) -> list:
        return [json.loads(raw) for raw in self._client.lrange(f"set:{key}", 0, -1)]


class CachedStore:
    """Reads through a per-replica copy with a time to live; writes refresh only it."""

    def __init__(self, store: RedisStore, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._copies: dict[tuple[str, str], tuple[float, object]] = {}
        self._lock = threading.Lock()

    def _cached(self, kind: str, key: str, load) -> object:
        now = time.monotonic()
        with self._lock:
            hit = self._copies.get((kind, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load(key)
        self._keep((kind, key), value, now)
        return value

    def _keep(self, slot: tuple[str, str], value: object, now: float) -> None:
        with self._lock:
            self._copies.pop(slot, None)
            self._copies[slot] = (now + self._ttl, value)
            while len(self._copies) > CACHE_ENTRIES:
                del self._copies[next(iter(self._copies))]

    def get(self, key: str) -> object:
        return self._cached("kv", key, self._store.get)

    def put(self, key: str, value: object) -> None:
        self._store.put(key, value)
        self._keep(("kv", key), value, time.monotonic())

    def add(self, key: str, element: object) -> int:
        length = self._store.add(key, element)
        with self._lock:
            self._copies.pop(("set", key), None)
        return length

    def members(self, key: str) -> list:
        return self._cached("set", key, self._store.members)


def make_store(mode: str, client: redis.Redis, ttl: float) -> Store:
    """The store for ``mode``; ``client`` must not retry (see create_app)."""
    if mode == "redis":
        return RedisStore(client)
    if mode == "cached":
        return CachedStore(RedisStore(client), ttl)
    raise ValueError(f"KV_MODE must be one of {', '.join(MODES)}, not {mode!r}")


def blueprint(store: Store, hostname: str) -> Blueprint:
    """The /kv and /set routes over ``store``."""
    bp = Blueprint("kv", __name__)
    answer = Answer(hostname)

    def body_value():
        raw = request.get_data(as_text=True)
        try:
            return True, json.loads(raw)
        except ValueError:
            return False, None

    @bp.put("/kv/<key>")
    def put(key: str):
        parsed, value = body_value()
        if not parsed:
            return answer({"key": key, "error": "the body must be one JSON value"}, 400)
        try:
            store.put(key, value)
        except redis.RedisError as exc:
            return answer.unavailable(key, exc)
        return answer({"key": key, "value": value})

    @bp.get("/kv/<key>")
    def get(key: str):
        try:
            return answer({"key": key, "value": store.get(key)})
        except redis.RedisError as exc:
            return answer.unavailable(key, exc)

    @bp.post("/set/<key>")
    def add(key: str):
        parsed, element = body_value()
        if not parsed:
            return answer({"key": key, "error": "the body must be one JSON value"}, 400)
        try:
            length = store.add(key, element)
        except redis.RedisError as exc:
            return answer.unavailable(key, exc)
        return answer({"key": key, "value": element, "length": length})

    @bp.get("/set/<key>")
    def members(key: str):
        try:
            return answer({"key": key, "value": store.members(key)})
        except redis.RedisError as exc:
            return answer.unavailable(key, exc)

    return bp
