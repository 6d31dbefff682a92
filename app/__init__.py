"""The hello app under test: the workshop's Flask page with a visit counter.

It knows nothing of the harness. ``GET /`` answers HTML to browsers and JSON
to clients that ask for it; ``GET /health`` says whether this replica should
receive traffic, and stays up when Redis is down (the page still renders and
says the counter is unavailable, as in the workshop). Beside the counter, the
state a real app has: keyed values and lists (``app/kv.py``, ``KV_MODE``), counters
added to (``app/tally.py``, ``TALLY_MODE``), ordered lists (``app/lists.py``,
``LIST_MODE``) and logins (``app/session.py``, ``SESSION_MODE``), each with a correct and
faulty modes.

Its folder is ``app/``; it installs as ``scalecheck_hello`` (pyproject's package-dir), since
the harness runs the user's app in the same environment and ``app`` is the likeliest name
of theirs. Its imports of itself are relative, so the Docker image can keep it as ``app``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import redis
from flask import Flask, jsonify, render_template_string, request
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import kv, lists, session, tally
from .cost import spend
from .counter import make_counter
from .replies import error_text, served_by

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Hello {{ name }}</title></head>
<body>
<h3>Hello {{ name }}!</h3>
<b>Hostname:</b> {{ hostname }}<br/>
<b>Visits:</b> {% if visits is not none %}{{ visits }}{% else %}
<i>cannot connect to Redis, counter disabled</i>{% endif %}
</body></html>
"""


def settings_from_env(env: Mapping[str, str] = os.environ) -> dict:
    """Read the app's configuration; every knob has the workshop's default."""
    return {
        "NAME": env.get("NAME", "world"),
        "REDIS_HOST": env.get("REDIS_HOST", "redis"),
        "REDIS_PORT": int(env.get("REDIS_PORT", "6379")),
        "REDIS_TIMEOUT": float(env.get("REDIS_TIMEOUT", "0.5")),
        "REDIS_PASSWORD": env.get("REDIS_PASSWORD") or None,
        "COUNTER_KEY": env.get("COUNTER_KEY", "counter"),
        "COUNTER_MODE": env.get("COUNTER_MODE", "atomic"),
        "KV_MODE": env.get("KV_MODE", "redis"),
        "KV_CACHE_TTL": float(env.get("KV_CACHE_TTL", "2")),
        "SESSION_MODE": env.get("SESSION_MODE", "redis"),
        "SESSION_TTL": float(env.get("SESSION_TTL", "3600")),
        "TALLY_MODE": env.get("TALLY_MODE", "atomic"),
        "LIST_MODE": env.get("LIST_MODE", "redis"),
        # What each GET / costs: CPU burnt and time waited (as for a database call), in ms.
        "CPU_MS": float(env.get("CPU_MS", "0")),
        "WAIT_MS": float(env.get("WAIT_MS", "0")),
        # A replica's name; defaults to the machine's (a container id under Docker).
        "HOSTNAME": env.get("HELLO_HOSTNAME") or socket.gethostname(),
    }


def create_app(
    settings: Mapping | None = None,
    is_draining: Callable[[], bool] = lambda: False,
) -> Flask:
    """Build the app. ``is_draining`` lets the server fail /health while it drains."""
    config = settings_from_env()
    config.update(settings or {})
    app = Flask(__name__)
    app.config.update(config)
    client = _redis(config, config["COUNTER_MODE"])
    counter = make_counter(config["COUNTER_MODE"], client, config["COUNTER_KEY"])
    # Keyed data and sessions: one attempt per command whatever COUNTER_MODE is.
    state_client = _redis(config, "atomic")
    app.register_blueprint(kv.blueprint(
        kv.make_store(config["KV_MODE"], state_client, config["KV_CACHE_TTL"]),
        config["HOSTNAME"]))
    app.register_blueprint(session.blueprint(
        session.make_sessions(config["SESSION_MODE"], state_client, config["SESSION_TTL"]),
        config["HOSTNAME"]))
    # The faulty retrying modes' client: redis-py's default, re-sending after a timeout.
    retrying_client = _redis(config, "retrying")
    app.register_blueprint(tally.blueprint(
        tally.make_tally(config["TALLY_MODE"], state_client, retrying_client),
        config["HOSTNAME"]))
    app.register_blueprint(lists.blueprint(
        lists.make_lists(config["LIST_MODE"], state_client, retrying_client),
        config["HOSTNAME"]))

    @app.get("/")
    def hello():
        spend(config["CPU_MS"], config["WAIT_MS"])
        visits, counter_error = None, None
        try:
            visits = counter.increment()
        except redis.RedisError as exc:
            counter_error = error_text(exc)
        body = {
            "hostname": config["HOSTNAME"],
            "visits": visits,
            "name": config["NAME"],
            "counter_error": counter_error,
        }
        headers = served_by(config["HOSTNAME"])
        if _wants_json():
            return jsonify(body), 200, headers
        return render_template_string(PAGE, **body), 200, headers

    @app.get("/health")
    def health():
        if is_draining():
            return jsonify(status="draining", hostname=config["HOSTNAME"]), 503
        return jsonify(status="ok", hostname=config["HOSTNAME"]), 200

    return app


def _redis(config: Mapping, mode: str) -> redis.Redis:
    """A Redis client of the app's settings, retrying as ``mode`` says (see below)."""
    return redis.Redis(host=config["REDIS_HOST"], port=config["REDIS_PORT"],
                       password=config["REDIS_PASSWORD"], socket_timeout=config["REDIS_TIMEOUT"],
                       socket_connect_timeout=config["REDIS_TIMEOUT"], **_retry_policy(mode))


def _retry_policy(mode: str) -> dict:
    """Exactly one attempt per command, except in the deliberately faulty ``retrying`` mode.

    redis-py re-sends a command after a timeout by default; for ``INCR`` that
    can count one visit twice, and it stretches ``REDIS_TIMEOUT`` several-fold.
    """
    if mode == "retrying":
        return {}  # redis-py's default: retries with backoff
    return {"retry": Retry(NoBackoff(), 0)}


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and (
        request.accept_mimetypes["application/json"] > request.accept_mimetypes["text/html"]
    )
