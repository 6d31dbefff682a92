"""The embedded stack for real: redis-server, gunicorn replicas, HAProxy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from loadtest.stack import StackError, make_stack
from loadtest.stack.embedded.stack import LocalStack
from tests.conftest import ROOT, free_port


def get_json(url: str) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def hostnames_seen(url: str, requests: int) -> set[str]:
    return {get_json(url)["hostname"] for _ in range(requests)}


@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
def test_scale_up_down_routes_exactly_n_replicas(no_leftovers, tmp_path, balancer):
    stack = LocalStack(port=free_port(), workdir=tmp_path, balancer=balancer,
                       api_port=free_port())
    try:
        first = stack.up(2)
        assert first.ready >= first.asked
        assert hostnames_seen(stack.url, 8) == {"hello-1", "hello-2"}
        stack.scale(4)
        assert len(stack.balancer_view()) == 4
        assert hostnames_seen(stack.url, 16) == {r.hostname for r in stack.replicas()}
        result = stack.scale(1)
        assert len(result.removed) == 3
        survivors = {r.hostname for r in stack.replicas()}
        assert hostnames_seen(stack.url, 6) == survivors and len(survivors) == 1
        # Names are never reused, as container ids are not.
        stack.scale(2)
        assert "hello-5" in {r.hostname for r in stack.replicas()}
        assert stack.read_counter() == 8 + 16 + 6
        kinds = [e["event"] for e in stack.events]
        assert kinds.count("scale_ready") == 4 and "replica_removed" in kinds
    finally:
        stack.down()
    assert (tmp_path / "logs" / f"{balancer}.log").exists()
    assert (tmp_path / "logs" / "hello-1.log").exists()
    assert [e["by"] for e in stack.events if e["event"] == "scale_asked"] == \
        ["up", "plan", "plan", "plan"]


def test_busy_port_is_named(no_leftovers):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = LocalStack(port=port)
        with pytest.raises(StackError, match=f"port {port} .*busy"):
            stack.up(1)
        stack.down()


def test_missing_binary_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StackError, match="apt-get install redis-server"):
        LocalStack(port=free_port()).up(1)


def test_unknown_backend_and_external_without_url():
    with pytest.raises(StackError, match="unknown stack backend"):
        make_stack("nomad")
    with pytest.raises(StackError, match="-H"):
        make_stack("external")


def test_stack_dies_with_a_killed_harness(no_leftovers, tmp_path):
    """SIGKILL the process that owns the stack: the kernel ends its children."""
    port = free_port()
    code = (
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r})\n"
        "from loadtest.stack.embedded.stack import LocalStack\n"
        f"s = LocalStack(port={port}, workdir={str(tmp_path)!r}); s.up(2)\n"
        "print('up', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        assert get_json(f"http://127.0.0.1:{port}/")["hostname"].startswith("hello-")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(0.2)
        except OSError:
            break
    else:
        pytest.fail(f"port {port} still answers after the harness was killed")
