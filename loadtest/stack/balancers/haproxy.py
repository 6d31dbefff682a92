"""HAProxy fed through its runtime API: the embedded stack's balancer, and Compose's.

Servers come and go through the admin socket (``add server``, ``set server …
state``, ``del server``) rather than config reloads or Docker's DNS, so the
balancer keeps its connections and counters, and, above all, it never routes
to a server before the harness says so:

- **adding**: the server is added in maintenance, put in *drain* (health
  checks run, no traffic), and made *ready* only once its check passed: a
  new replica gets its first request only when it answers its health path.
  (Filling a ``server-template`` from Docker's DNS instead answered 503 for
  about 0.1 s at every Compose scale-up: 26 and 61 requests cut in two runs.)
- **removing**: *drain* (no new request goes there), wait until nothing is
  in flight, *maint*, ``del server``; only then is the replica stopped.

Every answer names its server in ``X-Scalecheck-Server`` (the replica's name),
so the harness knows which replica served a request even when the app does
not say. ``noreuseport`` makes a second HAProxy on the same port fail to bind
instead of silently sharing it. HAProxy logs only what went wrong (``dontlog-normal``):
the harness records every request itself, and a line for each filled a small disk
before the records did.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from loadtest.contract.wire import SERVER_HEADER
from loadtest.stack import processes
from loadtest.stack.balancers.base import LocalBalancer
from loadtest.stack.balancers.views import haproxy_rows, haproxy_servers, haproxy_state
from loadtest.stack.base import BalancerRow, StackError, wait_until
from loadtest.stack.private import private_dir, remove

BACKEND = "hello"
#: ``check_status`` of a passed health check (layer 7, 6 or 4).
CHECK_PASSED = ("L7OK", "L6OK", "L4OK")

HAPROXY_CFG = """\
global
    stats socket {admin_socket}{admin_mode} level admin
    log stdout format raw local0 info
    maxconn 4096
    noreuseport

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    retries 0

frontend web
    bind {bind}:{port}
    default_backend {backend}

frontend stats
    bind {bind}:{api_port}
    stats enable
    stats uri /stats
    stats refresh 2s

backend {backend}
    balance roundrobin
{health_check}    http-response set-header """ + SERVER_HEADER + """ %s
"""


def haproxy_config(admin_socket: str, port: int, api_port: int,
                   health_path: str | None = "/health", bind: str = "127.0.0.1",
                   backend: str = BACKEND) -> str:
    """The whole configuration; servers are added at run time. ``health_path``: a replica
    is healthy while it answers 2xx there; without one, while it accepts connections (a
    check of ``/`` every 200 ms could change the app's state behind the records' back)."""
    health_check = (f"    option httpchk GET {health_path}\n    http-check expect rstatus ^2\n"
                    if health_path else "")
    # A unix socket only root may use; a TCP one (in a container) is published on loopback.
    admin_mode = "" if admin_socket.startswith("ipv4@") else " mode 600"
    return HAPROXY_CFG.format(admin_socket=admin_socket, admin_mode=admin_mode, bind=bind,
                              port=port, api_port=api_port, backend=backend,
                              health_check=health_check)


class HAProxyAdmin:
    """A small client for HAProxy's runtime API.

    ``address``: ``abns@name`` (a Linux abstract socket: it lives only as long as
    HAProxy and leaves no file behind, even on kill -9), a path, or ``(host, port)``
    for a TCP socket (HAProxy in a container, published on 127.0.0.1).
    """

    def __init__(self, address: str | tuple[str, int], timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        if isinstance(address, tuple):
            self._family, self._target = socket.AF_INET, address
        elif address.startswith("abns@"):
            # HAProxy pads an abstract name with NULs to the whole sun_path (108 bytes).
            self._family = socket.AF_UNIX
            self._target = ("\0" + address[len("abns@"):]).ljust(108, "\0")
        else:
            self._family, self._target = socket.AF_UNIX, address

    def command(self, line: str) -> str:
        with socket.socket(self._family, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._target)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as exc:
                raise StackError(f"HAProxy runtime API unreachable ({exc})") from None
        return b"".join(chunks).decode(errors="replace")

    def servers(self, backend: str) -> list[dict]:
        """Rows of ``show stat`` for the backend's servers."""
        return haproxy_servers(self.command("show stat"), backend)


class HAProxyServers:
    """The scale protocol over one backend of an HAProxy the harness feeds (see the
    module's docstring). Names are the replicas' names."""

    def __init__(self, admin: HAProxyAdmin, backend: str = BACKEND,
                 check: str = "inter 200ms fall 2 rise 1") -> None:
        self.admin = admin
        self.backend = backend
        self.check = check
        self.servers: dict[str, str] = {}  # name -> address, as configured

    def add(self, name: str, address: str, timeout: float = 30.0) -> None:
        """Add a replica; return once HAProxy's own check found it healthy and it is in
        rotation."""
        out = self.admin.command(f"add server {self.backend}/{name} {address} check "
                                 f"{self.check} disabled")
        if "New server registered" not in out:
            raise StackError(f"HAProxy refused server {name}: {out.strip()}")
        self.servers[name] = address
        self.admin.command(f"enable health {self.backend}/{name}")
        self._set(name, "drain")  # checked, and no traffic yet

        def checked() -> bool:
            # HAProxy starts a server "up" before its first check ("DRAIN 1/2", check INI):
            # only a passed check says the replica answers.
            row = self._row(name)
            return row is not None and haproxy_state(row) == "DRAIN" and \
                (row.get("check_status") or "").startswith(CHECK_PASSED)

        wait_until(checked, timeout, interval=0.05,
                   what=f"HAProxy's health check to find {name} healthy")
        self._set(name, "ready")

    def begin_removal(self, names: set[str]) -> None:
        for name in names:
            self._set(name, "drain")

    def wait_idle(self, names: set[str], timeout: float) -> None:
        def idle() -> bool:
            rows = [r for r in self.admin.servers(self.backend) if r["svname"] in names]
            return all(r.get("scur") in ("0", "") and r.get("qcur") in ("0", "") for r in rows)

        try:
            wait_until(idle, timeout, what="draining replicas to finish their work")
        except StackError:
            pass  # go on: each replica's own graceful stop covers what is left

    def finish_removal(self, names: set[str]) -> None:
        for name in names:
            self._set(name, "maint")

        def deleted() -> bool:
            present = {r["svname"] for r in self.admin.servers(self.backend)} & names
            for name in present:
                self.admin.command(f"del server {self.backend}/{name}")
            return not ({r["svname"] for r in self.admin.servers(self.backend)} & names)

        wait_until(deleted, 10, what=f"HAProxy to delete {', '.join(sorted(names))}")
        for name in names:
            self.servers.pop(name, None)

    def forget(self, name: str) -> None:
        """A replica died: out at once, without waiting for anything."""
        self._set(name, "maint")
        self.admin.command(f"del server {self.backend}/{name}")
        self.servers.pop(name, None)

    def routes_exactly(self, names: set[str], may_be_down: set[str] = frozenset()) -> bool:
        rows = self.admin.servers(self.backend)
        return {r["svname"] for r in rows} == names and \
            all(haproxy_state(r) == "UP" for r in rows if r["svname"] not in may_be_down)

    def view(self) -> list[BalancerRow]:
        return haproxy_rows(self.admin.servers(self.backend))

    def _row(self, name: str) -> dict | None:
        return next((r for r in self.admin.servers(self.backend) if r["svname"] == name), None)

    def _set(self, name: str, state: str) -> None:
        self.admin.command(f"set server {self.backend}/{name} state {state}")


def haproxy_version() -> str | None:
    try:
        out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"version (\S+)", out.stdout)
    return match.group(1) if match else None


class HAProxyBalancer(LocalBalancer):
    """HAProxy as a child process of the embedded stack; its admin socket is a file in a
    directory only this user may enter (see ``private``)."""

    name = "haproxy"
    binary = "haproxy"
    package = "haproxy"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._socket_dir = private_dir("haproxy")
        self.admin_socket = str(self._socket_dir / "admin.sock")
        self.admin = HAProxyAdmin(self.admin_socket)
        self.runtime = HAProxyServers(self.admin, BACKEND,
                                      f"inter {self.health_interval_ms}ms fall 2 rise 1")

    def start(self) -> None:
        cfg = self.paths.workdir / "haproxy.cfg"
        cfg.write_text(haproxy_config(self.admin_socket, self.paths.port, self.paths.api_port,
                                      self.paths.health_path))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"HAProxy rejected its config: {check.stderr.strip()[:200]}")
        self.process = processes.spawn(["haproxy", "-db", "-f", str(cfg)],
                                       self.paths.log_dir / "haproxy.log")
        self.runtime.servers = {}

        def ready() -> bool:
            if self.process.poll() is not None:
                raise StackError(f"HAProxy exited at start (is port {self.paths.port} or "
                                 f"{self.paths.api_port} busy?); see logs/haproxy.log")
            try:
                return BACKEND in self.admin.command("show backend")
            except StackError:
                return False  # its admin socket is not there yet

        wait_until(ready, 10, what="HAProxy to start")

    def add(self, name: str, address: str) -> None:
        self.runtime.add(name, address)

    def begin_removal(self, names: set[str]) -> None:
        self.runtime.begin_removal(names)

    def wait_idle(self, names: set[str], timeout: float) -> None:
        self.runtime.wait_idle(names, timeout)

    def finish_removal(self, names: set[str]) -> None:
        self.runtime.finish_removal(names)

    def forget(self, name: str) -> None:
        self.runtime.forget(name)

    def routes_exactly(self, names: set[str], may_be_down: set[str] = frozenset()) -> bool:
        return self.runtime.routes_exactly(names, may_be_down)

    def view(self) -> list[BalancerRow]:
        return self.runtime.view() if self.alive() else []

    def version(self) -> str | None:
        return haproxy_version()

    def current_servers(self) -> dict[str, str]:
        return dict(self.runtime.servers)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=5)
            self.process = None
        Path(self.admin_socket).unlink(missing_ok=True)

    def close(self) -> None:
        """Gone for good: its private directory too (``stop`` alone may be a restart)."""
        self.stop()
        remove(self._socket_dir)
