"""Every backend reads its balancer through one reader per balancer API (stack.views), so
a server the balancer has not checked yet looks the same everywhere: UNCHECKED, never UP.

HAProxy is real: a server added with a check that has not run yet (HAProxy starts it
"UP", check INI) is read through the embedded stack's HAProxy servers and through the
Compose stack's view of the same HAProxy. Traefik's document is served by a stand-in on
loopback: a real Traefik reports a server UP from the moment it is configured until its
first check, and drops one its Docker or Swarm provider finds unhealthy, so the state
"configured, not in serverStatus" cannot be produced on demand; the stand-in serves the
shape of Traefik's API document (/api/http/services/NAME) exactly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtest.stack.balancers.base import BalancerPaths
from loadtest.stack.balancers.haproxy import HAProxyAdmin, HAProxyServers, haproxy_config
from loadtest.stack.balancers.traefik import TraefikBalancer
from loadtest.stack.balancers.views import UNCHECKED
from loadtest.stack.base import BalancerRow, wait_until
from loadtest.stack.docker.compose.stack import ComposeStack
from loadtest.stack.docker.swarm.stack import SwarmStack
from tests.conftest import free_port, need

A, B = "10.0.9.2", "10.0.9.3"  # never connected to: only names in a document


def _states(rows: list[BalancerRow]) -> dict[str, str]:
    return {row.server: row.status for row in rows}


# -- HAProxy, real ------------------------------------------------------------------------

@pytest.fixture
def haproxy(tmp_path):
    if shutil.which("haproxy") is None:
        need("haproxy", "not installed (make setup installs it)")
    socket_name = f"abns@scalecheck-views-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(socket_name, free_port(), free_port()))
    proc = subprocess.Popen(["haproxy", "-W", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    admin = HAProxyAdmin(socket_name, timeout=2)
    try:
        def answers() -> bool:
            try:
                return "Name" in admin.command("show info")
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_until(answers, 20, what="HAProxy's runtime API")
        yield admin
    finally:
        proc.terminate()
        proc.wait(10)


def test_haproxy_server_not_checked_yet_is_unchecked_for_every_backend(haproxy, tmp_path):
    servers = HAProxyServers(haproxy, check="inter 1h")  # its first check: not within the test
    out = haproxy.command(f"add server {servers.backend}/hello-1 127.0.0.1:{free_port()} "
                          "check inter 1h")
    assert "New server registered" in out, out
    haproxy.command(f"enable health {servers.backend}/hello-1")
    raw = next(r for r in haproxy.servers(servers.backend) if r["svname"] == "hello-1")
    assert raw["check_status"].lstrip("* ").startswith("INI"), raw  # HAProxy: not checked
    compose = ComposeStack(workdir=tmp_path / "compose")
    compose.api_port, compose._started, compose._runtime = free_port(), True, servers
    local_view, compose_view = _states(servers.view()), _states(compose.balancer_view())
    assert local_view == compose_view == {"hello-1": UNCHECKED}
    assert not servers.routes_exactly({"hello-1"})  # not UP: not counted as routed


# -- Traefik, through a stand-in for its API ----------------------------------------------

class _TraefikApi(BaseHTTPRequestHandler):
    document: dict = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps(self.document if self.path.startswith("/api/http/services/")
                          else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def traefik_api():
    """Traefik's document for a service of two servers: A checked and UP, B configured and
    not checked yet (absent from serverStatus)."""
    _TraefikApi.document = {
        "loadBalancer": {"servers": [{"url": f"http://{A}:8000"}, {"url": f"http://{B}:8000"}]},
        "serverStatus": {f"http://{A}:8000": "UP"}, "status": "enabled", "type": "loadbalancer"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TraefikApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _Container:
    """What ComposeStack reads of a container (Docker's own objects need an engine)."""

    def __init__(self, ip: str, hostname: str) -> None:
        self.id = hostname
        self.attrs = {"Config": {"Hostname": hostname}}
        self.ip = ip


def _swarm_task(task_id: str, slot: int, ip: str, network: str) -> dict:
    """A task as Swarm's API describes it (the fields the view reads)."""
    return {"ID": task_id, "Slot": slot, "NodeID": "n1", "CreatedAt": "2026-12-01T00:00:00Z",
            "DesiredState": "running", "Status": {"State": "running"},
            "Spec": {"ContainerSpec": {"Hostname": "{{.Task.Name}}"}},
            "NetworksAttachments": [{"Network": {"Spec": {"Name": network}},
                                     "Addresses": [f"{ip}/24"]}]}


def test_traefik_server_not_checked_yet_is_unchecked_for_every_backend(traefik_api, tmp_path):
    paths = BalancerPaths(free_port(), traefik_api, tmp_path, tmp_path)
    local = TraefikBalancer(paths)
    local._servers = {"r1": f"{A}:8000", "r2": f"{B}:8000"}

    compose = ComposeStack(workdir=tmp_path / "compose")
    compose.api_port, compose._started, compose._runtime = traefik_api, True, None
    containers = [_Container(A, "r1"), _Container(B, "r2")]
    compose._app_containers = lambda: containers
    compose._ip = lambda c: c.ip

    swarm = SwarmStack()
    swarm.api_port, swarm._started = traefik_api, True
    tasks = [_swarm_task("t1", 1, A, swarm.network), _swarm_task("t2", 2, B, swarm.network)]
    names = {t["ID"]: swarm._tracker.task_of(t).hostname for t in tasks}
    swarm_view = {row.address.split(":")[0]: row.status for row in swarm._view(tasks)}

    expected = {"r1": "UP", "r2": UNCHECKED}
    assert _states(local.view()) == expected
    assert _states(compose.balancer_view()) == expected
    assert swarm_view == {A: "UP", B: UNCHECKED}, (swarm_view, names)
    assert {row.server for row in swarm._view(tasks)} == set(names.values())
