"""A small client for HAProxy's runtime API (the admin stats socket).

Scaling goes through this socket rather than config reloads, so the balancer
keeps its connections and counters while servers come and go.
"""

from __future__ import annotations

import csv
import io
import socket

from loadtest.stack.base import StackError


class HAProxyAdmin:
    def __init__(self, socket_path: str, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
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
        return [
            row
            for row in rows
            if row.get("pxname") == backend and row.get("svname") not in ("BACKEND", "FRONTEND")
        ]

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
