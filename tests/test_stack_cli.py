"""The stack CLI as a workshop user drives it: up -d, ps, scale, logs, down."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

import pytest

from loadtest.stack.cli import build_parser
from tests.conftest import ROOT, free_port


def stack(project, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "loadtest.stack", "--project-dir", str(project),
                           *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        return resp.read().decode()


@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
def test_workshop_by_hand(tmp_path, balancer, no_leftovers):
    port, api = free_port(), free_port()
    try:
        up = stack(tmp_path, "up", "-d", "--scale", "2", "--port", port, "--balancer", balancer,
                   "--api-port", api)
        assert up.returncode == 0, up.stderr
        # --port, the old name of --stack-port, still works, and says the new one once
        assert up.stderr.splitlines() == [OLD_PORT_WARNING], up.stderr
        assert f"behind {balancer}" in up.stdout and f"127.0.0.1:{api}" in up.stdout
        assert "Hello world!" in page(port)
        seen = {re.search(r"hello-\d+", page(port)).group() for _ in range(4)}
        assert len(seen) == 2  # the hostname changes from one reload to the next
        # The balancer's port has the name it has under Locust (--port, above, is its old one)
        again = stack(tmp_path, "up", "-d", "--stack-port", port)
        assert again.returncode == 2 and "already running" in again.stderr
        scaled = stack(tmp_path, "scale", 3)
        assert scaled.returncode == 0 and "hello-3" in scaled.stdout
        ps = stack(tmp_path, "ps")
        assert ps.stdout.count(" UP ") == 3
        down_to_one = stack(tmp_path, "scale", 1)
        assert "removed hello-2, hello-3" in down_to_one.stdout
        logs = stack(tmp_path, "logs", balancer)
        assert f"{balancer} |" in logs.stdout
    finally:
        down = stack(tmp_path, "down")
    assert down.returncode == 0 and "stack down" in down.stdout
    assert "no stack is running" in stack(tmp_path, "ps").stdout


OLD_PORT_WARNING = ("python -m loadtest.stack up: warning: --port is now --stack-port (--port "
                    "still works, for one release)")


@pytest.mark.parametrize("words,warned", [
    (["up", "--stack-port", "5001"], []),
    (["up", "--port", "5001"], [OLD_PORT_WARNING]),
    (["up", "--port=5001"], [OLD_PORT_WARNING]),
])
def test_one_name_for_the_balancers_port(words, warned, capsys):
    """--stack-port, as under Locust; --port, its old name, reads the same for one release
    and says the new name in one line on stderr."""
    args = build_parser().parse_args(words)
    assert args.stack_port == 5001 and not hasattr(args, "port")
    assert capsys.readouterr().err.splitlines() == warned


def test_scale_without_a_stack_is_an_error(tmp_path):
    proc = stack(tmp_path, "scale", 2)
    assert proc.returncode == 2 and "no stack is running" in proc.stderr


def test_bad_usage(tmp_path):
    proc = stack(tmp_path, "scale", "many")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


ENV_APP = """
import http.server, os
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('GREETING')} {os.environ.get('SECOND')}".encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
"""


def test_detached_up_keeps_every_option_the_user_gave(tmp_path, no_leftovers):
    """`up -d` hands the options to the process that runs the stack; repeated ones
    (--app-env twice) and values with '=' in them must arrive as the user wrote them."""
    (tmp_path / "env_app.py").write_text(ENV_APP)
    port = free_port()
    try:
        up = stack(tmp_path, "up", "-d", "--stack-port", port, "--app-dir", tmp_path,
                   "--app-cmd", f"{sys.executable} env_app.py", "--app-env", "GREETING=hi",
                   "--app-env", "SECOND=a=b", "--health-path", "/")
        assert up.returncode == 0, up.stderr
        assert page(port) == "hi a=b"
    finally:
        assert stack(tmp_path, "down").returncode == 0
