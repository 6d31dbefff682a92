"""Logins, as a real app keeps them: a session id in a cookie, the session on the server.

Two modes, chosen by ``SESSION_MODE``:

- ``redis``: sessions in Redis (``SET sess:<id> user EX SESSION_TTL``), so every
  replica knows every login. Each command is sent once (a Redis that does not answer
  within ``REDIS_TIMEOUT`` gives a 503).
- ``memory``: sessions in this replica's memory: a request that lands on another
  replica is not logged in (401), the classic stateful-replica bug. The faulty mode.

Routes (every answer names the replica, in the body and in ``X-Served-By``):
``POST /login`` with ``user`` (a form field or JSON) sets the cookie ``hello_session`` and
answers ``{"user", "hostname"}``; ``GET /me`` answers 200 ``{"user", "hostname"}`` for a
known session, else 401 ``{"user": null, "hostname"}``.
"""

from __future__ import annotations

import secrets
import threading
from typing import Protocol

import redis
from flask import Blueprint, request

from .replies import Answer, error_text

MODES = ("redis", "memory")
COOKIE = "hello_session"
MEMORY_SESSIONS = 100_000  # per replica; the oldest go first beyond this


class Sessions(Protocol):
    def create(self, user: str) -> str: ...
    def user(self, sid: str) -> str | None: ...


class RedisSessions:
    def __init__(self, client: redis.Redis, ttl: float) -> None:
        self._client = client
        self._ttl = max(1, int(ttl))

    def create(self, user: str) -> str:
        sid = secrets.token_urlsafe(18)
        self._client.set(f"sess:{sid}", user, ex=self._ttl)
        return sid

    def user(self, sid: str) -> str | None:
        raw = self._client.get(f"sess:{sid}")
        return None if raw is None else raw.decode()


class MemorySessions:
    """This process's memory: only the replica that logged the user in knows the user."""

    def __init__(self) -> None:
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()

    def create(self, user: str) -> str:
        sid = secrets.token_urlsafe(18)
        with self._lock:
            self._users[sid] = user
            while len(self._users) > MEMORY_SESSIONS:
                del self._users[next(iter(self._users))]
        return sid

    def user(self, sid: str) -> str | None:
        with self._lock:
            return self._users.get(sid)


def make_sessions(mode: str, client: redis.Redis, ttl: float) -> Sessions:
    """The session store for ``mode``; ``client`` must not retry (see create_app)."""
    if mode == "redis":
        return RedisSessions(client, ttl)
    if mode == "memory":
        return MemorySessions()
    raise ValueError(f"SESSION_MODE must be one of {', '.join(MODES)}, not {mode!r}")


def blueprint(sessions: Sessions, hostname: str) -> Blueprint:
    """The /login and /me routes over ``sessions``."""
    bp = Blueprint("session", __name__)
    answer = Answer(hostname)

    @bp.post("/login")
    def login():
        data = request.get_json(silent=True) if request.is_json else request.form
        user = (data or {}).get("user")
        if not isinstance(user, str) or not user:
            return answer({"user": None, "error": "give a user (form field or JSON)"}, 400)
        try:
            sid = sessions.create(user)
        except redis.RedisError as exc:
            return answer({"user": None, "error": error_text(exc)}, 503)
        response, status, headers = answer({"user": user})
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Lax")
        return response, status, headers

    @bp.get("/me")
    def me():
        sid = request.cookies.get(COOKIE)
        try:
            user = sessions.user(sid) if sid else None
        except redis.RedisError as exc:
            return answer({"user": None, "error": error_text(exc)}, 503)
        return answer({"user": user}, 200 if user is not None else 401)

    return bp
