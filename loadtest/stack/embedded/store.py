"""The embedded stack's shared store: a real redis-server on loopback, and the small TCP
proxy in front of it that the link faults (latency, reset) act on.

Started only when the app needs one. The store is watched: one that exits on its own
is noticed (``died``), one the harness restarts is not (its restart is expected).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from loadtest.contract import events as ev
from loadtest.stack import private, processes
from loadtest.stack.base import StackError, free_port, wait_until
from loadtest.stack.embedded.linkproxy import send_command

PART = "store"


class LocalStore:
    """``with_password``: Redis requires a password (random, per run), so that no other
    local user can change the state under test; the replicas get it in their environment
    (readable by this user only), never on a command line (``ps`` shows those to all)."""

    def __init__(self, workdir: Path, log_dir: Path, events: ev.EventLog,
                 with_password: bool = False) -> None:
        self.dir = workdir / "redis"
        self.password = secrets.token_urlsafe(24) if with_password else None
        self._secret_dir: Path | None = None
        self.log_dir = log_dir
        self.events = events
        self.port: int | None = None
        self.popen: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.proxy_ports: tuple[int, int] | None = None  # (listen, control)
        self._reported = False

    @property
    def address_port(self) -> int | None:
        """Where the replicas reach it: through the proxy where there is one."""
        return self.proxy_ports[0] if self.proxy_ports else self.port

    def start(self, with_proxy: bool = False) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):  # a free port may be taken before redis binds it
            port = free_port()
            self._spawn(port)
            try:
                wait_until(lambda p=port: self.ping(p) or self.popen.poll() is not None, 10,
                           what="redis-server to answer")
            except StackError:
                processes.stop(self.popen)
                raise
            if self.popen.poll() is None:
                self.port = port
                break
        else:
            raise StackError("redis-server would not start; see logs/redis.log")
        if with_proxy:
            self._start_proxy()

    def _spawn(self, port: int) -> None:
        self.popen = processes.spawn(
            ["redis-server", *self._config_file(), "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            self.log_dir / "redis.log")

    def _config_file(self) -> list[str]:
        """The password, in a file of mode 0600 in a private directory, never in argv."""
        if self.password is None:
            return []
        if self._secret_dir is None:
            self._secret_dir = private.private_dir("redis")
        conf = self._secret_dir / "redis.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"requirepass {self.password}\n")
        return [str(conf)]

    def client(self, port: int | None = None, timeout: float = 2) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port or self.port, password=self.password,
                           socket_timeout=timeout, retry=None)

    def ping(self, port: int | None = None) -> bool:
        try:
            return bool(self.client(port, timeout=0.5).ping())
        except redis.RedisError:
            return False

    def _start_proxy(self) -> None:
        listen, control = free_port(), free_port()
        self.proxy = processes.spawn(
            [sys.executable, "-m", "loadtest.stack.embedded.linkproxy",
             "--listen", f"127.0.0.1:{listen}", "--to", f"127.0.0.1:{self.port}",
             "--control", f"127.0.0.1:{control}"],
            self.log_dir / "linkproxy.log", cwd=str(processes.REPO_ROOT),
            env={**os.environ, "PYTHONPATH": processes.pythonpath_with_repo(dict(os.environ))})
        wait_until(lambda: self.ping(listen) or self.proxy.poll() is not None, 10,
                   what="the Redis link proxy to answer")
        if self.proxy.poll() is not None:
            raise StackError("the Redis link proxy would not start; see logs/linkproxy.log")
        self.proxy_ports = (listen, control)

    def read(self, key: str) -> int:
        client = self.client()
        try:
            value = client.get(key)
        except redis.RedisError as exc:
            raise StackError(f"cannot read the counter from Redis: {exc}") from None
        finally:
            client.close()
        return int(value) if value is not None else 0

    def signal(self, sig: int) -> None:
        if self.popen is None:
            raise StackError("Redis is not running")
        processes.signal_group(self.popen, sig)

    def restart(self, persist: bool, key: str) -> dict:
        """Stop Redis (saving first if ``persist``) and start it again on the same port.

        Writes are paused first (CLIENT PAUSE WRITE), so the counter read before the
        restart is the last value the old instance will ever give: the analysis splits
        the history there when the restart loses the counter."""
        if self.popen is None or self.port is None:
            raise StackError("Redis is not running")
        with self.events.expecting(PART):
            client = self.client(timeout=5)
            paused_at, before = time.time(), None
            try:
                client.execute_command("CLIENT", "PAUSE", 10000, "WRITE")
                paused_at = time.time()
                before = int(client.get(key) or 0)
                client.shutdown(save=persist, nosave=not persist)
            except redis.ConnectionError:
                pass  # SHUTDOWN closes the connection as it goes
            except redis.RedisError as exc:
                raise StackError(f"cannot restart Redis: {exc}") from None
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                processes.stop(self.popen)
            if not persist:
                (self.dir / "dump.rdb").unlink(missing_ok=True)
            self._spawn(self.port)
            wait_until(self.ping, 10, what="Redis to restart")
        # A fresh instance starts from the saved value, or from nothing: read now, clients
        # may already have counted on the new instance.
        return {"paused_at": paused_at, "counter_before": before,
                "counter_after": before if persist else 0,
                "counter_read_after": self.read(key), "persist": persist}

    def disturb_link(self, latency_ms: float = 0.0, reset: bool = False) -> None:
        if self.proxy_ports is None:
            raise StackError("the stack was started without the proxy in front of Redis")
        send_command(("127.0.0.1", self.proxy_ports[1]),
                     {"reset": True} if reset else {"latency_ms": latency_ms})

    def heal_link(self) -> None:
        if self.proxy_ports is not None:
            send_command(("127.0.0.1", self.proxy_ports[1]), {"clear": True})

    def died(self) -> dict | None:
        """The store's death, recorded once, unless the harness was restarting it."""
        if self.popen is None or self.popen.poll() is None or self._reported or \
                self.events.expected(PART):
            return None
        self._reported = True
        return self.events.add(ev.STORE_DIED, store="redis", returncode=self.popen.returncode)

    def stop(self) -> None:
        if self.popen is not None:
            processes.signal_group(self.popen, signal.SIGCONT)  # a fault may have left it frozen
        for name in ("proxy", "popen"):
            popen = getattr(self, name)
            if popen is not None:
                processes.stop(popen, timeout=5)
                setattr(self, name, None)
        private.remove(self._secret_dir)
        self._secret_dir = None

