"""Counters a real app keeps (likes, stock, a balance): a number per key that requests add
to and read, in Redis.

Three modes, chosen by ``TALLY_MODE``:

- ``atomic``: ``INCRBY``, sent exactly once: a Redis that does not answer within
  ``REDIS_TIMEOUT`` gives a 503 whose add may or may not have happened, never a
  retried one.
- ``racy``: ``GET``, add, ``SET``: two replicas interleaving lose one of the adds (the
  classic read-modify-write). Faulty.
- ``retrying``: the same ``INCRBY`` through a client that re-sends a command after a
  timeout (redis-py's default): an add whose first attempt reached a stalled Redis is
  applied twice. Faulty.

Routes (every answer names the replica, in the body and in ``X-Served-By``):
``POST /tally/<key>`` (body: an integer, JSON) adds it and answers ``{"key", "added",
"hostname"}``; ``GET /tally/<key>`` answers ``{"key", "value", "hostname"}`` (``value``
0 for a key never added to).
"""

from __future__ import annotations

import json

import redis
from flask import Blueprint, request

from .replies import Answer, error_text

MODES = ("atomic", "racy", "retrying")


class Tally:
    """A counter per key in Redis: ``INCRBY``, or (``racy``) read, add, write back."""

    def __init__(self, client: redis.Redis, racy: bool = False) -> None:
        self._client = client
        self._racy = racy

    def add(self, key: str, n: int) -> None:
        if self._racy:
            value = int(self._client.get(f"tally:{key}") or 0) + n
            self._client.set(f"tally:{key}", value)
        else:
            self._client.incrby(f"tally:{key}", n)

    def value(self, key: str) -> int:
        return int(self._client.get(f"tally:{key}") or 0)


def make_tally(mode: str, client: redis.Redis, retrying: redis.Redis) -> Tally:
    """The counters for ``mode``: ``client`` sends each command once, ``retrying`` re-sends
    after a timeout."""
    if mode not in MODES:
        raise ValueError(f"TALLY_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return Tally(retrying if mode == "retrying" else client, racy=mode == "racy")


def blueprint(tally: Tally, hostname: str) -> Blueprint:
    """The /tally routes over ``tally``."""
    bp = Blueprint("tally", __name__)
    answer = Answer(hostname)

    @bp.post("/tally/<key>")
    def add(key: str):
        try:
            n = json.loads(request.get_data(as_text=True))
        except ValueError:
            n = None
        if isinstance(n, bool) or not isinstance(n, int):
            return answer({"key": key, "error": "the body must be one JSON integer"}, 400)
        try:
            tally.add(key, n)
        except redis.RedisError as exc:  # sent; whether it took effect is unknown
            return answer({"key": key, "error": error_text(exc)}, 503)
        return answer({"key": key, "added": n})

    @bp.get("/tally/<key>")
    def read(key: str):
        try:
            return answer({"key": key, "value": tally.value(key)})
        except redis.RedisError as exc:
            return answer.unavailable(key, exc)

    return bp
