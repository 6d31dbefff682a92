"""The embedded stack: real redis-server, gunicorn replicas and HAProxy, no Docker.

Everything listens on loopback. HAProxy is the balancer on ``127.0.0.1:<port>``
(4000 by default); replicas are added and removed through its runtime API
(``add server`` / ``set server … state drain`` / ``del server``), never by a
reload. Every replica gets a hostname ``hello-<n>`` that is never reused, as a
container id would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import redis

from loadtest.stack import processes
from loadtest.stack.base import (
    Replica,
    ScaleResult,
    Stack,
    StackError,
    check_port_free,
    free_port,
    require_binary,
    wait_until,
)
from loadtest.stack.haproxy import HAProxyAdmin

BACKEND = "hello"
HEALTH_CHECK = "inter 200ms fall 2 rise 1"

HAPROXY_CFG = """\
global
    stats socket {admin_socket} mode 600 level admin
    log stdout format raw local0 info
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    retries 0

frontend web
    bind 127.0.0.1:{port}
    stats enable
    stats uri /haproxy-stats
    stats refresh 2s
    default_backend {backend}

backend {backend}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
"""


class _Proc:
    def __init__(self, replica: Replica, popen: subprocess.Popen) -> None:
        self.replica = replica
        self.popen = popen


class LocalStack(Stack):
    name = "local"

    def __init__(
        self,
        port: int = 4000,
        workdir: Path | None = None,
        log_dir: Path | None = None,
        app_env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        drain_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.port = port
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="scalecheck-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log_dir = Path(log_dir) if log_dir else self.workdir / "logs"
        # Unix socket paths are limited to ~100 bytes, so keep them short.
        self._sockdir = Path(tempfile.mkdtemp(prefix="scalecheck-sock-"))
        self.app_env = {**os.environ, **(app_env or {})}
        self.counter_key = self.app_env.get("COUNTER_KEY", "counter")
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self._redis_port: int | None = None
        self._redis: subprocess.Popen | None = None
        self._haproxy: subprocess.Popen | None = None
        self._admin: HAProxyAdmin | None = None
        self._replicas: dict[str, _Proc] = {}
        self._next_id = 1
        self._down = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self._log_dir

    # -- verbs -------------------------------------------------------------

    def up(self, replicas: int) -> ScaleResult:
        require_binary("redis-server")
        require_binary("haproxy")
        check_port_free(self.port)
        self._down = False
        self._start_redis()
        self._start_haproxy()
        return self.scale(replicas)

    def scale(self, replicas: int) -> ScaleResult:
        if replicas < 1:
            raise StackError(f"cannot scale to {replicas}: need at least 1 replica")
        if self._admin is None:
            raise StackError("the stack is not up")
        asked = time.time()
        self._reap_dead()
        current = [p for p in self._replicas.values() if p.replica.state == "up"]
        self._event("scale_asked", level=replicas, previous=len(current))
        added: list[str] = []
        removed: list[str] = []
        if replicas > len(current):
            added = self._add_replicas(replicas - len(current))
        elif replicas < len(current):
            # Newest first, as Compose removes the highest-numbered containers.
            victims = sorted(current, key=lambda p: p.replica.started or 0)[replicas:]
            self._remove_replicas(victims)
            removed = [p.replica.hostname for p in victims]
        self._wait_routed(replicas)
        ready = time.time()
        self._event(
            "scale_ready",
            level=replicas,
            seconds=round(ready - asked, 3),
            hostnames=[r.hostname for r in self.replicas()],
        )
        return ScaleResult(replicas, asked, ready, added, removed)

    def replicas(self) -> list[Replica]:
        return [p.replica for p in self._replicas.values() if p.replica.state == "up"]

    def read_counter(self) -> int | None:
        if self._redis_port is None:
            return None
        client = redis.Redis(host="127.0.0.1", port=self._redis_port, socket_timeout=2)
        try:
            value = client.get(self.counter_key)
        except redis.RedisError as exc:
            raise StackError(f"cannot read the counter from Redis: {exc}") from None
        finally:
            client.close()
        return int(value) if value is not None else 0

    def down(self) -> None:
        if self._down:
            return
        self._down = True
        processes.stop_all([p.popen for p in self._replicas.values() if p.popen.poll() is None])
        for proc in self._replicas.values():
            if proc.replica.state == "up":
                proc.replica.state = "stopped"
        for name in ("_haproxy", "_redis"):
            popen = getattr(self, name)
            if popen is not None:
                processes.stop(popen, timeout=5)
                setattr(self, name, None)
        self._admin = None
        shutil.rmtree(self._sockdir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def save_logs(self, dest: Path) -> None:
        if self.log_dir.exists() and self.log_dir.resolve() != dest.resolve():
            shutil.copytree(self.log_dir, dest, dirs_exist_ok=True)

    def kill_replica(self, hostname: str, sig: int) -> None:
        """Send a signal to one replica behind the balancer's back (fault injection)."""
        proc = self._replicas.get(hostname)
        if proc is None:
            raise StackError(f"no replica named {hostname}")
        os.killpg(proc.popen.pid, sig)
        self._event("replica_signalled", hostname=hostname, signal=int(sig))

    def balancer_view(self) -> list[dict]:
        return self._admin.servers(BACKEND) if self._admin else []

    def describe(self) -> dict:
        return {**super().describe(), "redis_port": self._redis_port}

    # -- parts -------------------------------------------------------------

    def _start_redis(self) -> None:
        for _attempt in range(3):
            port = free_port()
            self._redis = processes.spawn(
                [
                    "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", str(self._sockdir),
                ],
                self.log_dir / "redis.log",
            )
            try:
                wait_until(lambda p=port: _redis_ping(p) or self._redis.poll() is not None,
                           10, what="redis-server to answer")
            except StackError:
                processes.stop(self._redis)
                raise
            if self._redis.poll() is None:
                self._redis_port = port
                return
        raise StackError("redis-server would not start; see logs/redis.log")

    def _start_haproxy(self) -> None:
        admin_socket = self._sockdir / "haproxy.sock"
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(
            admin_socket=admin_socket, port=self.port, backend=BACKEND))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"HAProxy rejected its config: {check.stderr.strip()[:200]}")
        self._haproxy = processes.spawn(["haproxy", "-db", "-f", str(cfg)],
                                        self.log_dir / "haproxy.log")
        self._admin = HAProxyAdmin(str(admin_socket))

        def ready() -> bool:
            if self._haproxy.poll() is not None:
                raise StackError(
                    f"HAProxy exited at start (is port {self.port} busy?); see logs/haproxy.log")
            return admin_socket.exists() and "hello" in self._admin.command("show backend")

        wait_until(ready, 10, what="HAProxy to start")

    def _add_replicas(self, count: int) -> list[str]:
        """Start ``count`` replicas, then put each in the balancer once it is healthy.

        Spawned from the calling thread on purpose: the parent-death signal
        fires when the *thread* that forked exits, so no worker threads here.
        """
        pending = [self._spawn_replica(f"hello-{self._take_id()}") for _ in range(count)]
        added = []
        deadline = time.monotonic() + self.ready_timeout
        attempts = {proc.replica.hostname: 1 for proc in pending}
        while pending:
            for proc in list(pending):
                port = int(proc.replica.address.rsplit(":", 1)[1])
                if proc.popen.poll() is not None:
                    # Lost a race for its port, or crashed: retry a couple of times.
                    name = proc.replica.hostname
                    if attempts[name] >= 3:
                        raise StackError(f"replica {name} would not start; see logs/{name}.log")
                    attempts[name] += 1
                    pending[pending.index(proc)] = self._spawn_replica(name)
                elif _healthy(port):
                    pending.remove(proc)
                    self._admin.add_server(BACKEND, proc.replica.hostname,
                                           proc.replica.address, HEALTH_CHECK)
                    proc.replica.state = "up"
                    self._event("replica_added", hostname=proc.replica.hostname,
                                address=proc.replica.address, pid=proc.popen.pid)
                    added.append(proc.replica.hostname)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.replica.hostname for p in pending)
                raise StackError(f"timed out after {self.ready_timeout:.0f}s waiting for "
                                 f"replica(s) {names} to answer /health")
            if pending:
                time.sleep(0.05)
        return added

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _spawn_replica(self, hostname: str) -> _Proc:
        port = free_port()
        env = {
            **self.app_env,
            "HELLO_HOSTNAME": hostname,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self._redis_port),
            "PORT": str(port),
            "BIND_HOST": "127.0.0.1",
            # HAProxy has already drained the replica when we stop it.
            "DRAIN_SECONDS": self.app_env.get("LOCAL_DRAIN_SECONDS", "0.2"),
            "PYTHONPATH": processes.pythonpath_with_repo(self.app_env),
        }
        popen = processes.spawn([sys.executable, "-m", "app.serve"],
                                self.log_dir / f"{hostname}.log", env=env,
                                cwd=str(processes.REPO_ROOT))
        proc = _Proc(Replica(hostname, f"127.0.0.1:{port}", "starting", popen.pid, time.time()),
                     popen)
        self._replicas[hostname] = proc
        return proc

    def _remove_replicas(self, victims: list[_Proc]) -> None:
        """Drain all victims at once, wait until none has work in flight, then take
        them out of HAProxy and stop them: no request is cut, and a scale-down by
        k replicas takes about as long as one by one."""
        for proc in victims:
            proc.replica.state = "draining"
            self._event("replica_removing", hostname=proc.replica.hostname)
            self._admin.set_state(BACKEND, proc.replica.hostname, "drain")
        names = {p.replica.hostname for p in victims}

        def idle() -> bool:
            rows = [r for r in self._admin.servers(BACKEND) if r["svname"] in names]
            return all(r.get("scur") in ("0", "") and r.get("qcur") in ("0", "") for r in rows)

        try:
            wait_until(idle, self.drain_timeout, what="draining replicas to finish their work")
        except StackError:
            pass  # go on: each replica's own graceful stop covers what is left
        for name in names:
            self._admin.set_state(BACKEND, name, "maint")

        def deleted() -> bool:
            present = {r["svname"] for r in self._admin.servers(BACKEND)} & names
            for name in present:
                self._admin.del_server(BACKEND, name)
            return not ({r["svname"] for r in self._admin.servers(BACKEND)} & names)

        wait_until(deleted, self.drain_timeout, what=f"HAProxy to delete {', '.join(names)}")
        processes.stop_all([proc.popen for proc in victims])
        for proc in victims:
            proc.replica.state = "removed"
            self._event("replica_removed", hostname=proc.replica.hostname)

    def _reap_dead(self) -> None:
        """Take replicas that died on their own out of the balancer, so scale() can replace them."""
        for proc in self._replicas.values():
            if proc.replica.state == "up" and proc.popen.poll() is not None:
                proc.replica.state = "dead"
                self._event("replica_died", hostname=proc.replica.hostname,
                            returncode=proc.popen.returncode)
                self._admin.set_state(BACKEND, proc.replica.hostname, "maint")
                self._admin.del_server(BACKEND, proc.replica.hostname)
                processes.stop(proc.popen)

    def _wait_routed(self, replicas: int) -> None:
        def routed() -> bool:
            rows = self._admin.servers(BACKEND)
            return len(rows) == replicas and all(r["status"] == "UP" for r in rows)

        wait_until(routed, self.ready_timeout,
                   what=f"HAProxy to report exactly {replicas} servers UP")


def _redis_ping(port: int) -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            return resp.status == 200 and json.loads(resp.read()).get("status") == "ok"
    except (urllib.error.URLError, OSError, ValueError):
        return False
