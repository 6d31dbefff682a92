"""What a balancer says about its servers: one reader per balancer API, for every backend.

Traefik answers on its API (``/api/http/services/<name>``) with the servers it
was given (``loadBalancer.servers``) and the health of those it has checked
(``serverStatus``); HAProxy answers ``show stat`` (its runtime API, or the
stats page's ``;csv``) with a row per server. Every backend (the embedded
stack, Compose, Swarm) reads them here, so that one rule holds everywhere:

- a server the balancer has not health-checked yet is ``UNCHECKED``: it is in
  the configuration, and it is not routed to as a healthy server (not ``UP``);
- an address is mapped to a replica's name by the caller (``names``); a server
  the caller does not know keeps its address as its name.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.error
import urllib.request
from collections.abc import Mapping

from loadtest.stack.base import BalancerRow

UNCHECKED = "UNCHECKED"


def address_of(url: str) -> str:
    """``http://10.0.0.5:8000/`` -> ``10.0.0.5:8000``."""
    return url.split("://", 1)[-1].rstrip("/")


def host_of(address: str) -> str:
    return address.rsplit(":", 1)[0]


# -- Traefik ------------------------------------------------------------------------------

def traefik_status(service: dict | None) -> dict[str, str] | None:
    """address -> UP / DOWN / UNCHECKED for the servers of one Traefik service (its API
    document), or None when there is no such document."""
    if not isinstance(service, dict):
        return None
    status = {address_of(url): str(state).upper()
              for url, state in (service.get("serverStatus") or {}).items()}
    for server in (service.get("loadBalancer") or {}).get("servers") or []:
        status.setdefault(address_of(server.get("url", "")), UNCHECKED)
    return status


def traefik_rows(service: dict | None, names: Mapping[str, str] | None = None,
                 by_host: bool = False) -> list[BalancerRow]:
    """Balancer rows from a Traefik service document. ``names`` maps an address (or only
    its host part, with ``by_host``) to the replica's name. Traefik counts nothing per
    server, so ``served`` and ``inflight`` are unknown."""
    names = names or {}
    rows = []
    for address, state in sorted((traefik_status(service) or {}).items()):
        key = host_of(address) if by_host else address
        rows.append(BalancerRow(names.get(key, address), address, state))
    return rows


class TraefikApi:
    """A Traefik API on 127.0.0.1 (the embedded binary, or a container's published port)."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.timeout = timeout

    def service(self, name: str) -> dict | None:
        """The document of service ``name`` (e.g. ``hello@file``), or None."""
        data = get_json(f"{self.base}/api/http/services/{name}", self.timeout)
        return data if isinstance(data, dict) else None

    def version(self) -> str | None:
        data = get_json(f"{self.base}/api/version", self.timeout)
        return str(data["Version"]) if isinstance(data, dict) and data.get("Version") else None

    def ping(self) -> bool:
        return get_text(f"{self.base}/ping", self.timeout) == "OK"


# -- HAProxy ------------------------------------------------------------------------------

def haproxy_servers(csv_text: str | None, backend: str) -> list[dict]:
    """Rows of ``show stat`` / ``stats;csv`` for one backend's servers (not its BACKEND or
    FRONTEND lines)."""
    if not csv_text:
        return []
    rows = csv.DictReader(io.StringIO(csv_text.lstrip("# ")))
    return [row for row in rows if row.get("pxname") == backend
            and row.get("svname") not in ("BACKEND", "FRONTEND")]


def haproxy_state(row: dict) -> str:
    """UP, DOWN, DRAIN, MAINT, ... (HAProxy writes e.g. ``UP 1/2`` while a check is
    rising). A server whose first check has not ended (``check_status`` ``INI``) is
    UNCHECKED, whatever HAProxy starts it as: HAProxy starts such a server up."""
    text = (row.get("status") or "").strip()
    check = (row.get("check_status") or "").lstrip("* ")
    if not text or check.startswith("INI"):
        return UNCHECKED
    return text.split()[0].upper()


def haproxy_rows(servers: list[dict], names: Mapping[str, str] | None = None) -> list[BalancerRow]:
    """Balancer rows; a server is named by ``names`` (address -> replica) or by its own
    ``svname``, which is the replica's name wherever the harness added it."""
    names = names or {}
    return [BalancerRow(names.get(row.get("addr") or "", row["svname"]), row.get("addr") or "",
                        haproxy_state(row), as_int(row.get("stot")), as_int(row.get("scur")))
            for row in servers]


# -- HTTP on loopback ---------------------------------------------------------------------

def get_text(url: str, timeout: float = 2.0, accept: str | None = None) -> str | None:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def get_json(url: str, timeout: float = 2.0, accept: str | None = "application/json"):
    text = get_text(url, timeout, accept)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def as_int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
