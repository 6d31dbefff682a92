"""Ordered lists a real app keeps (comments, an event log, a cart's lines): appended to and
read whole, in Redis.

Three modes, chosen by ``LIST_MODE``:

- ``redis``: ``RPUSH``, sent exactly once (a Redis that does not answer within
  ``REDIS_TIMEOUT`` gives a 503: the append may or may not have happened).
- ``racy``: the list kept as one JSON document: ``GET``, append, ``SET``. Two replicas
  interleaving each write back their own copy, and one append is lost. Faulty.
- ``retrying``: the same ``RPUSH`` through a client that re-sends a command after a
  timeout (redis-py's default): an append whose first attempt reached a stalled Redis
  is in the list twice. Faulty.

Routes (every answer names the replica, in the body and in ``X-Served-By``):
``POST /list/<key>`` (body: one JSON element) appends it and answers ``{"key",
"value": element, "hostname"}``; ``GET /list/<key>`` answers ``{"key", "value":
[elements in order], "hostname"}``.
"""

from __future__ import annotations

import json

import redis
from flask import Blueprint, request

from .replies import Answer, error_text

MODES = ("redis", "racy", "retrying")


class Lists:
    """A list per key in Redis: ``RPUSH``/``LRANGE``, or (``racy``) one JSON document read,
    appended to and written back."""

    def __init__(self, client: redis.Redis, racy: bool = False) -> None:
        self._client = client
        self._racy = racy

    def append(self, key: str, element: object) -> None:
        if self._racy:
            raw = self._client.get(f"doc:{key}")
            items = json.loads(raw) if raw is not None else []
            items.append(element)
            self._client.set(f"doc:{key}", json.dumps(items))
        else:
            self._client.rpush(f"list:{key}", json.dumps(element))

    def items(self, key: str) -> list:
        if self._racy:
            raw = self._client.get(f"doc:{key}")
            return json.loads(raw) if raw is not None else []
        return [json.loads(raw) for raw in self._client.lrange(f"list:{key}", 0, -1)]


def make_lists(mode: str, client: redis.Redis, retrying: redis.Redis) -> Lists:
    """The lists for ``mode``: ``client`` sends each command once, ``retrying`` re-sends
    after a timeout."""
    if mode not in MODES:
        raise ValueError(f"LIST_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return Lists(retrying if mode == "retrying" else client, racy=mode == "racy")


def blueprint(lists: Lists, hostname: str) -> Blueprint:
    """The /list routes over ``lists``."""
    bp = Blueprint("lists", __name__)
    answer = Answer(hostname)

    @bp.post("/list/<key>")
    def append(key: str):
        try:
            element = json.loads(request.get_data(as_text=True))
        except ValueError:
            return answer({"key": key, "error": "the body must be one JSON value"}, 400)
        try:
            lists.append(key, element)
        except redis.RedisError as exc:  # sent; whether it took effect is unknown
            return answer({"key": key, "error": error_text(exc)}, 503)
        return answer({"key": key, "value": element})

    @bp.get("/list/<key>")
    def read(key: str):
        try:
            return answer({"key": key, "value": lists.items(key)})
        except redis.RedisError as exc:
            return answer.unavailable(key, exc)

    return bp
