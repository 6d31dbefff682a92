"""How the app's routes answer: JSON that names the replica, in the body (``hostname``) and
in the ``X-Served-By`` header, so that a client (or the harness) can tell which replica
served it without trusting the balancer. Written once here for every state route."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Response, jsonify

SERVED_BY = "X-Served-By"

Reply = tuple[Response, int, dict[str, str]]


def served_by(hostname: str) -> dict[str, str]:
    """The header that names the replica."""
    return {SERVED_BY: hostname}


def error_text(exc: BaseException) -> str:
    """What a failed store command says to the client: the exception's type and message."""
    return f"{type(exc).__name__}: {exc}"


class Answer:
    """``answer(body, status)``: ``body`` as JSON with the replica's name added."""

    __slots__ = ("hostname", "headers")

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.headers = served_by(hostname)

    def __call__(self, body: Mapping, status: int = 200) -> Reply:
        return jsonify({**body, "hostname": self.hostname}), status, self.headers

    def unavailable(self, key: str, exc: BaseException) -> Reply:
        """A read or write whose store command failed: sent once, its effect unknown."""
        return self({"key": key, "value": None, "error": error_text(exc)}, 503)
