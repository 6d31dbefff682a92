"""The one interface every stack backend implements, and what they share.

A backend is a class with a handful of verbs; the harness never asks which
backend it holds. ``StackError`` carries a one-line message meant for the user.
"""

from __future__ import annotations

import shutil
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil


class StackError(Exception):
    """A problem the user can act on; its message is one line."""


@dataclass
class Replica:
    hostname: str
    address: str
    state: str = "up"
    pid: int | None = None
    started: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScaleResult:
    level: int
    asked: float
    ready: float
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class Stack(ABC):
    """The system under test, behind one balancer URL."""

    name: str = "stack"
    #: False for stacks the harness observes but cannot scale or read.
    controlled: bool = True

    def __init__(self) -> None:
        self.events: list[dict] = []

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def up(self, replicas: int) -> ScaleResult: ...

    @abstractmethod
    def scale(self, replicas: int) -> ScaleResult:
        """Return only once the balancer routes to exactly ``replicas`` healthy replicas."""

    @abstractmethod
    def replicas(self) -> list[Replica]: ...

    @abstractmethod
    def read_counter(self) -> int | None:
        """The shared counter's value, or None where this backend cannot read it."""

    @abstractmethod
    def down(self) -> None:
        """Stop everything this stack started; safe to call twice."""

    def save_logs(self, dest: Path) -> None:  # noqa: B027 - optional for backends
        """Copy whatever logs the backend has into ``dest``."""

    def describe(self) -> dict:
        return {"backend": self.name, "url": self.url, "controlled": self.controlled}

    def _event(self, kind: str, **details) -> dict:
        event = {"t": time.time(), "event": kind, **details}
        self.events.append(event)
        return event

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.down()


def require_binary(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(
            f"{name} not found: install it with `apt-get install {package or name}`"
            " (Debian/Ubuntu), or run `make demo`, which does"
        )
    return path


def check_port_free(port: int, host: str = "127.0.0.1", hint: str = "--port") -> None:
    """Fail with a line naming the port and, when we can tell, who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            owner = _port_owner(port)
            who = f" (held by {owner})" if owner else ""
            raise StackError(
                f"port {port} on {host} is busy{who}; choose another with {hint}") from None


def _port_owner(port: int) -> str | None:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    return f"pid {conn.pid} {psutil.Process(conn.pid).name()}"
    except (psutil.Error, OSError):
        return None
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now; callers retry on the rare race with another process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
