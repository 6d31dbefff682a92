"""What the embedded stack runs as a replica: the hello app, or the user's own command.

    --app-cmd 'uvicorn shop.main:app --host 127.0.0.1 --port {port}' --app-dir ~/shop \
        --app-env LOG_LEVEL=warning --health-path /healthz --with-redis

A replica is the command with ``{port}`` replaced by a free loopback port, which
is also in the environment as ``PORT``; with ``--with-redis`` (or a counter to
read) the harness starts a redis-server and hands its address over as
``REDIS_URL``, ``REDIS_HOST`` and ``REDIS_PORT``. A replica is healthy once its
health path answers 2xx, or, for an app without one, once ``/`` answers below
500. On the way out it leaves the balancer, gets ``drain_time`` to finish what
is in flight, then SIGTERM, and SIGKILL ``stop_grace`` later.
"""

from __future__ import annotations

import json
import shlex
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import psutil

from loadtest.stack import processes
from loadtest.stack.base import StackError


@dataclass(frozen=True)
class AppSpec:
    command: str | None = None            # None: the hello app (-m scalecheck_hello.serve)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    health_path: str | None = None        # None: the hello app's /health, or "/" < 500
    drain_time: float = 0.1               # from leaving the balancer to SIGTERM
    stop_grace: float = 10.0              # from SIGTERM to SIGKILL
    with_redis: bool = False
    redis_auth: bool = False              # the user's app takes a Redis password (ours does)

    def __post_init__(self) -> None:
        if self.command is not None:
            try:
                words = shlex.split(self.command)
            except ValueError as exc:
                raise StackError(f"--app-cmd does not parse as a command ({exc})") from None
            if not words:
                raise StackError("--app-cmd is empty")

    @property
    def ours(self) -> bool:
        return self.command is None

    @property
    def name_prefix(self) -> str:
        return "hello" if self.ours else "app"

    @property
    def needs_redis(self) -> bool:
        return self.ours or self.with_redis

    @property
    def takes_redis_password(self) -> bool:
        return self.ours or self.redis_auth

    @property
    def check_path(self) -> str | None:
        """What the balancer checks periodically (None: only that it accepts connections)."""
        return self.health_path or ("/health" if self.ours else None)

    def argv(self, port: int) -> list[str]:
        if self.ours:
            # Its installed name: a user's own `app` cannot shadow it, nor it theirs.
            return [sys.executable, "-m", "scalecheck_hello.serve"]
        return [word.replace("{port}", str(port)) for word in shlex.split(self.command)]

    def environment(self, base: dict[str, str], name: str, port: int,
                    redis_port: int | None, redis_password: str | None = None
                    ) -> dict[str, str]:
        env = {**base, **self.env, "PORT": str(port), "SCALECHECK_REPLICA": name}
        if redis_port is not None:
            auth = f":{redis_password}@" if redis_password else ""
            env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_port),
                       REDIS_URL=f"redis://{auth}127.0.0.1:{redis_port}/0")
            if redis_password:
                env["REDIS_PASSWORD"] = redis_password
        if self.ours:
            env.update(HELLO_HOSTNAME=name, BIND_HOST="127.0.0.1",
                       # The balancer has already stopped routing here when we stop it.
                       DRAIN_SECONDS=base.get("LOCAL_DRAIN_SECONDS", "0.2"),
                       PYTHONPATH=processes.pythonpath_with_repo(base))
        return env

    def working_dir(self) -> str:
        return self.cwd or str(processes.REPO_ROOT)

    def healthy(self, port: int) -> bool:
        """The replica answers: 2xx on its health path, or below 500 on ``/``."""
        path = self.check_path or "/"
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                         headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=1) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return path == "/" and exc.code < 500
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if self.ours:  # the hello app says it is ok, or that it drains
            try:
                return json.loads(body).get("status") == "ok"
            except (ValueError, AttributeError):
                return False
        return 200 <= status < 300 or path == "/"


def parse_app_env(items: list[str] | None) -> dict[str, str]:
    """``--app-env NAME=VALUE`` (repeatable) -> {NAME: VALUE}; one line if malformed."""
    out = {}
    for item in items or []:
        name, sep, value = str(item).partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise StackError(f"--app-env {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process and its children listen on (to tell a command that ignores
    ``{port}`` and ``PORT`` from one that is only slow to start)."""
    return {port for _, port in listening_addresses(pid)}


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) a process and its children listen on."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return set()
    found = set()
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return found


def beyond_loopback(pid: int) -> list[str]:
    """What a replica listens on beyond this machine's loopback (``0.0.0.0:5000``)."""
    return sorted(f"{ip}:{port}" for ip, port in listening_addresses(pid)
                  if ip not in ("127.0.0.1", "::1") and not ip.startswith("127."))
