"""No open doors: what a run listens on, and who can drive it.

Locust's web UI and master port listen on every interface by default, with no login; the
harness makes them loopback unless the user widens them. Every part of the embedded
stack listens on loopback too. (A sandbox may hide some sockets from `ss`; psutil reads
/proc/net directly.)"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import LOCUSTFILE, ROOT, free_port

LOOPBACK = ("127.0.0.1", "::1")


def _listening(pids: set[int]) -> list[tuple[str, int, str]]:
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                name = "?"
            out.append((conn.laddr.ip, conn.laddr.port, name))
    return out


def _tree(pid: int) -> set[int]:
    try:
        root = psutil.Process(pid)
        return {pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.Error:
        return set()


@pytest.mark.parametrize("processes", [None, "2"])
def test_a_run_with_its_web_ui_listens_on_loopback_only(tmp_path, processes, no_leftovers):
    web_port = free_port()
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--autostart",
           "--autoquit", "0", "-u", "2", "-r", "2", "--scale-levels", "1", "--stage-time", "8s",
           "--web-port", str(web_port), "--stack-port", str(free_port()),
           "--api-port", str(free_port()), "--run-dir", str(tmp_path / "run"),
           *(["--processes", processes] if processes else [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen: list[tuple[str, int, str]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            seen = _listening(_tree(proc.pid))
            names = {name for _, _, name in seen}
            if any(port == web_port for _, port, _ in seen) and "traefik" in names:
                break
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert any(port == web_port for _, port, _ in seen), (seen, out[-2000:])
    assert {name for _, _, name in seen} >= {"traefik", "redis-server"}, seen
    wide = [s for s in seen if s[0] not in LOOPBACK]
    assert not wide, f"listening beyond loopback: {wide}"
    assert proc.returncode in (0, 1), out[-2000:]
    if processes:
        master_port = 5557  # Locust's default master port, now on loopback
        assert any(port == master_port and ip in LOOPBACK for ip, port, _ in seen), seen


def test_widening_the_web_ui_is_said_in_one_line(tmp_path, no_leftovers):
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
           "--web-host", "0.0.0.0", "--web-port", str(free_port()), "--autostart",
           "--autoquit", "0", "-u", "1", "-r", "1", "--scale-levels", "1", "--stage-time", "3s",
           "--stack-port", str(free_port()), "--api-port", str(free_port()),
           "--run-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    # --autostart shows the UI too: it is the web UI that is open, autostart or not
    assert "the web UI listens on 0.0.0.0 with no login" in proc.stderr


def test_the_web_form_cannot_send_the_load_elsewhere(tmp_path, no_leftovers):
    """A start from the web UI naming another host (here a closed port of this machine):
    every request still goes to the harness's stack, and the run says it ignored the
    host."""
    import json
    import urllib.parse
    import urllib.request

    web_port, stack_port = free_port(), free_port()
    elsewhere = f"http://127.0.0.1:{free_port()}"
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE),
           "--web-port", str(web_port), "--scale-levels", "1", "--stage-time", "4s",
           "--stack-port", str(stack_port), "--api-port", str(free_port()),
           "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        form = urllib.parse.urlencode({"user_count": 2, "spawn_rate": 2,
                                       "host": elsewhere}).encode()
        while True:
            assert time.monotonic() < deadline and proc.poll() is None, "no web UI"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/swarm", form,
                                            timeout=5) as resp:
                    assert resp.status == 200
                break
            except OSError:
                time.sleep(0.3)
        run_json = tmp_path / "run" / "run.json"
        while json.loads(run_json.read_text())["status"] not in ("completed", "interrupted",
                                                                  "failed"):
            assert time.monotonic() < deadline, "the run did not end"
            time.sleep(0.5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    run = json.loads(run_json.read_text())
    assert any("is ignored" in w["text"] and elsewhere in w["text"] for w in run["warnings"])
    import pandas as pd

    df = pd.read_parquet(tmp_path / "run" / "requests")
    assert len(df) > 10 and (df.status == 200).all(), df.status.value_counts()


def _connect_as_nobody(sock: str, line: bytes) -> subprocess.CompletedProcess:
    """Another local user (nobody) tries the socket: exit 13 when refused at connect."""
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect({sock!r})\nexcept PermissionError:\n    sys.exit(13)\n"
             f"s.sendall({line!r}); print(s.recv(999))")
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=30)


def test_haproxy_s_admin_api_refuses_another_local_user(tmp_path, no_leftovers):
    """The embedded HAProxy's admin socket is a file in a directory of mode 0700: root
    (the harness) uses it; another local user (nobody) cannot even reach it. It was an
    abstract socket, which carries no permissions: any user could add servers."""
    import os
    import shutil

    from loadtest.stack.embedded.stack import LocalStack

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    stack = LocalStack(port=free_port(), api_port=free_port(), balancer="haproxy",
                       log_dir=tmp_path / "logs")
    try:
        stack.up(1)
        sock = stack._lb.admin_socket
        assert not sock.startswith("abns@") and Path(sock).exists()
        assert "hello" in stack._lb.admin.command("show backend")  # the harness can
        other = _connect_as_nobody(sock, b"show backend\n")
        assert other.returncode == 13, (other.returncode, other.stdout, other.stderr)
    finally:
        stack.down()
    assert not Path(sock).parent.exists()


def test_the_by_hand_stack_s_commands_refuse_another_local_user(tmp_path):
    """`python -m loadtest.stack up -d` is driven over a Unix socket (scale, down): a file
    in a directory of mode 0700, so another local user cannot scale or stop it."""
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user")
    from loadtest.stack.cli import _socket_path

    project = tmp_path / "project"
    project.mkdir()
    stack = [sys.executable, "-m", "loadtest.stack", "--project-dir", str(project)]
    up = subprocess.run([*stack, "up", "-d", "--scale", "1", "--stack-port", str(free_port())],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    sock = _socket_path(project / ".scalecheck")
    try:
        other = _connect_as_nobody(sock, b'{"cmd": "down"}\n')
        assert other.returncode == 13, (other.returncode, other.stdout, other.stderr)
        ps = subprocess.run([*stack, "ps"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
        assert "hello-1" in ps.stdout  # still up, and ours to drive
    finally:
        subprocess.run([*stack, "down"], cwd=ROOT, capture_output=True, timeout=120)
    assert not Path(sock).parent.exists()


def test_the_embedded_redis_requires_the_password_the_app_was_handed(tmp_path, no_leftovers):
    """Any local user could change the counter under test; now Redis requires a password
    (random per run) that only the replicas get, in their environment, never on a command
    line (`ps` shows those to everyone)."""
    import psutil
    import redis

    from loadtest.stack.embedded.stack import LocalStack

    stack = LocalStack(port=free_port(), api_port=free_port(), log_dir=tmp_path / "logs")
    try:
        stack.up(1)
        port, password = stack.store.port, stack.store.password
        assert password and len(password) >= 24
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=2).get("hello:visits")
        assert stack.read_counter() == 0
        for proc in psutil.process_iter(["cmdline"]):
            assert password not in " ".join(proc.info["cmdline"] or [])
        replica = psutil.Process(stack.replicas()[0].pid)
        assert replica.environ()["REDIS_PASSWORD"] == password
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(
                stack.url, headers={"Accept": "application/json"}), timeout=5) as resp:
            assert json.loads(resp.read())["visits"] == 1  # the app uses it
    finally:
        stack.down()
