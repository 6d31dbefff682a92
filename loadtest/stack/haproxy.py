"""HAProxy in front of the embedded stack, driven through its runtime API.

Scaling goes through the admin socket (``add server``, ``set server … state
drain``, ``del server``) rather than config reloads, so the balancer keeps
its connections and counters while servers come and go. ``noreuseport``
makes a second HAProxy on the same port fail to bind instead of silently
sharing it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import subprocess
import uuid

from loadtest.stack import processes
from loadtest.stack.balancer import LocalBalancer
from loadtest.stack.base import BalancerRow, StackError, wait_until

BACKEND = "hello"

HAPROXY_CFG = """\
global
    stats socket {admin_socket} mode 600 level admin
    log stdout format raw local0 info
    maxconn 4096
    noreuseport

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
    default_backend {backend}

frontend stats
    bind 127.0.0.1:{api_port}
    stats enable
    stats uri /stats
    stats refresh 2s

backend {backend}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
"""


class HAProxyAdmin:
    """A small client for HAProxy's runtime API (the admin stats socket).

    ``socket_path`` starting with ``abns@`` is a Linux abstract socket: it
    lives only as long as HAProxy and leaves no file behind, even on kill -9.
    """

    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        # HAProxy pads an abstract name with NULs to the whole sun_path (108 bytes).
        self._address = ("\0" + socket_path[len("abns@"):]).ljust(108, "\0") \
            if socket_path.startswith("abns@") else socket_path

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._address)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except OSError as exc:
                raise StackError(f"HAProxy runtime API unreachable ({exc})") from None
        return b"".join(chunks).decode(errors="replace")

    def servers(self, backend: str) -> list[dict]:
        """Rows of ``show stat`` for the backend's servers (not the BACKEND line)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return [row for row in rows if row.get("pxname") == backend
                and row.get("svname") not in ("BACKEND", "FRONTEND")]

    def add_server(self, backend: str, name: str, address: str, check: str) -> None:
        out = self.command(f"add server {backend}/{name} {address} check {check}")
        if "New server registered" not in out:
            raise StackError(f"HAProxy refused server {name}: {out.strip()}")
        self.command(f"enable health {backend}/{name}")
        self.command(f"enable server {backend}/{name}")

    def set_state(self, backend: str, name: str, state: str) -> None:
        self.command(f"set server {backend}/{name} state {state}")

    def del_server(self, backend: str, name: str) -> str:
        return self.command(f"del server {backend}/{name}").strip()


class HAProxyBalancer(LocalBalancer):
    name = "haproxy"
    binary = "haproxy"
    package = "haproxy"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.admin_socket = f"abns@scalecheck-haproxy-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.admin = HAProxyAdmin(self.admin_socket)
        self._servers: dict[str, str] = {}

    @property
    def _check(self) -> str:
        return f"inter {self.health_interval_ms}ms fall 2 rise 1"

    def start(self) -> None:
        cfg = self.paths.workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(admin_socket=self.admin_socket, port=self.paths.port,
                                          api_port=self.paths.api_port, backend=BACKEND))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(cfg)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise StackError(f"HAProxy rejected its config: {check.stderr.strip()[:200]}")
        self.process = processes.spawn(["haproxy", "-db", "-f", str(cfg)],
                                       self.paths.log_dir / "haproxy.log")
        self._servers = {}

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
        self.admin.add_server(BACKEND, name, address, self._check)
        self._servers[name] = address

    def begin_removal(self, names: set[str]) -> None:
        for name in names:
            self.admin.set_state(BACKEND, name, "drain")

    def wait_idle(self, names: set[str], timeout: float) -> None:
        def idle() -> bool:
            rows = [r for r in self.admin.servers(BACKEND) if r["svname"] in names]
            return all(r.get("scur") in ("0", "") and r.get("qcur") in ("0", "") for r in rows)

        try:
            wait_until(idle, timeout, what="draining replicas to finish their work")
        except StackError:
            pass  # go on: each replica's own graceful stop covers what is left

    def finish_removal(self, names: set[str]) -> None:
        for name in names:
            self.admin.set_state(BACKEND, name, "maint")

        def deleted() -> bool:
            present = {r["svname"] for r in self.admin.servers(BACKEND)} & names
            for name in present:
                self.admin.del_server(BACKEND, name)
            return not ({r["svname"] for r in self.admin.servers(BACKEND)} & names)

        wait_until(deleted, 10, what=f"HAProxy to delete {', '.join(sorted(names))}")
        for name in names:
            self._servers.pop(name, None)

    def forget(self, name: str) -> None:
        self.admin.set_state(BACKEND, name, "maint")
        self.admin.del_server(BACKEND, name)
        self._servers.pop(name, None)

    def routes_exactly(self, names: set[str]) -> bool:
        rows = self.admin.servers(BACKEND)
        return {r["svname"] for r in rows} == names and all(r["status"] == "UP" for r in rows)

    def view(self) -> list[BalancerRow]:
        if not self.alive():
            return []
        return [BalancerRow(server=r["svname"], address=r.get("addr") or "",
                            status=(r.get("status") or "?").split()[0].upper(),
                            served=_int(r.get("stot")), inflight=_int(r.get("scur")))
                for r in self.admin.servers(BACKEND)]

    def version(self) -> str | None:
        try:
            out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"version (\S+)", out.stdout)
        return match.group(1) if match else None

    def current_servers(self) -> dict[str, str]:
        return dict(self._servers)

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=5)
            self.process = None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
