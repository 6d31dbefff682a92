"""The Docker Compose backend: the workshop's stack, scaled with the Compose CLI.

Scaling runs ``docker compose up -d --scale <service>=N`` (or Debian's
``docker-compose`` v1 where that is what exists); the Docker SDK lists the
replicas, reads the counter from the Redis container, kills a replica on
request, and saves logs. ``scale(n)`` returns only when the balancer routes
to exactly n healthy replicas (Traefik's API, or HAProxy's stats) and a probe
through the balancer has seen n distinct hostnames. Load and probes go only
to ports published on 127.0.0.1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from loadtest.stack.base import Replica, ScaleResult, Stack, StackError, check_port_free
from loadtest.stack.processes import REPO_ROOT

DEFAULT_FILE = REPO_ROOT / "compose" / "docker-compose-scale.yml"


def compose_command() -> list[str]:
    """``docker compose`` (v2) if the plugin is there, else ``docker-compose`` (v1)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackError("neither `docker compose` nor `docker-compose` found: install Docker "
                     "Compose (Debian: apt-get install docker-compose)")


def docker_client():
    """A Docker SDK client, or a one-line reason why there is none."""
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        text = str(exc)
        if "Permission denied" in text:
            raise StackError("permission denied on the Docker socket: run as root or join the "
                             "docker group") from None
        if "FileNotFoundError" in text or "No such file" in text or "Connection refused" in text:
            raise StackError("the Docker daemon is not running (start dockerd, or use "
                             "--stack local)") from None
        raise StackError(f"cannot reach Docker: {text.splitlines()[0][:160]}") from None


class ComposeStack(Stack):
    name = "compose"

    def __init__(
        self,
        port: int = 4000,
        compose_file: Path | str | None = None,
        service: str = "hello",
        api_port: int | None = None,
        project: str | None = None,
        workdir: Path | None = None,  # noqa: ARG002 - same signature as the local stack
        log_dir: Path | None = None,
        ready_timeout: float = 90.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.port = port
        self.file = Path(compose_file or DEFAULT_FILE).resolve()
        self.service = service
        self.api_port = api_port or _free_port_near(port + 4080)
        self.project = project or f"scalecheck-{uuid.uuid4().hex[:8]}"
        self.log_dir = Path(log_dir) if log_dir else None
        self.ready_timeout = ready_timeout
        self.env = {**os.environ, **(env or {}), "SCALECHECK_PORT": str(port),
                    "SCALECHECK_API_PORT": str(self.api_port)}
        self._compose: list[str] | None = None
        self._client = None
        text = self.file.read_text(errors="replace") if self.file.exists() else ""
        self._balancer = "traefik" if "traefik" in text else "haproxy"
        self._started = False
        self.counter_key = self.env.get("COUNTER_KEY", "counter")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict:
        return {**super().describe(), "compose_file": str(self.file), "project": self.project,
                "service": self.service, "balancer": self._balancer,
                "balancer_api": f"http://127.0.0.1:{self.api_port}"}

    # -- verbs -------------------------------------------------------------

    def up(self, replicas: int) -> ScaleResult:
        if not self.file.exists():
            raise StackError(f"compose file not found: {self.file}")
        self._compose = compose_command()
        self._client = docker_client()
        services = self._run(["config", "--services"]).split()
        if self.service not in services:
            raise StackError(f"service {self.service!r} is not in {self.file.name} "
                             f"(it has: {', '.join(services)})")
        check_port_free(self.port)
        check_port_free(self.api_port, hint="another API port")
        self._started = True
        return self.scale(replicas)

    def scale(self, replicas: int) -> ScaleResult:
        if replicas < 1:
            raise StackError(f"cannot scale to {replicas}: need at least 1 replica")
        asked = time.time()
        before = {c.id: c for c in self._containers()}
        self._event("scale_asked", level=replicas, previous=len(before))
        self._run(["up", "-d", "--no-recreate", "--no-build", "--scale",
                   f"{self.service}={replicas}"])
        after = {c.id: c for c in self._containers()}
        added = [self._hostname(c) for cid, c in after.items() if cid not in before]
        removed = [self._hostname(c) for cid, c in before.items() if cid not in after]
        for name in removed:
            # Compose stopped them (SIGTERM, drain, exit) while the command ran.
            self._event("replica_removing", hostname=name)["t"] = asked
            self._event("replica_removed", hostname=name)
        for c in after.values():
            if c.id not in before:
                self._event("replica_added", hostname=self._hostname(c), container=c.name)
        self._wait_routed(replicas)
        ready = time.time()
        self._event("scale_ready", level=replicas, seconds=round(ready - asked, 3),
                    hostnames=[r.hostname for r in self.replicas()])
        return ScaleResult(replicas, asked, ready, added, removed)

    def replicas(self) -> list[Replica]:
        out = []
        for c in sorted(self._containers(), key=_number):
            nets = c.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
            address = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "")
            out.append(Replica(self._hostname(c), f"{address}:8000", c.status,
                               c.attrs.get("State", {}).get("Pid"), None))
        return out

    def read_counter(self) -> int | None:
        redis = self._service_containers("redis")
        if not redis:
            return None
        code, output = redis[0].exec_run(["redis-cli", "GET", self.counter_key])
        if code != 0:
            raise StackError(f"cannot read the counter in the redis container: {output[:120]!r}")
        text = output.decode().strip()
        return int(text) if text.lstrip("-").isdigit() else 0

    def kill_replica(self, hostname: str, sig: int) -> None:
        for c in self._containers():
            if self._hostname(c) == hostname:
                c.kill(signal=int(sig))
                self._event("replica_signalled", hostname=hostname, signal=int(sig))
                return
        raise StackError(f"no replica named {hostname}")

    def down(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.log_dir is not None:
            self.save_logs(self.log_dir)
        self._run(["down", "-v", "--remove-orphans", "--timeout", "20"], check=False)

    def save_logs(self, dest: Path) -> None:
        dest = Path(dest)
        if (dest / "compose.log").exists() or not self._compose:
            return
        dest.mkdir(parents=True, exist_ok=True)
        logs = self._run(["logs", "--no-color", "--timestamps"], check=False)
        (dest / "compose.log").write_text(logs)
        try:
            (dest / "balancer.json").write_text(json.dumps(self.balancer_view(), indent=1))
        except StackError:
            pass

    # -- balancer ------------------------------------------------------------

    def balancer_view(self) -> list[dict]:
        if self._balancer == "traefik":
            data = _get_json(f"http://127.0.0.1:{self.api_port}/api/http/services/"
                             f"{self.service}@docker")
            status = (data or {}).get("serverStatus", {}) if isinstance(data, dict) else {}
            return [{"server": url, "status": st} for url, st in status.items()]
        text = _get_text(f"http://127.0.0.1:{self.api_port}/stats;csv")
        if text is None:
            return []
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return [{"server": r["svname"], "address": r.get("addr"), "status": r["status"]}
                for r in rows if r.get("pxname") == self.service
                and r.get("svname") not in ("BACKEND", "FRONTEND")]

    def _wait_routed(self, replicas: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            view = self.balancer_view()
            up = [s for s in view if s["status"] == "UP"]
            if len(up) == replicas and self._probe_hostnames(replicas):
                return
            time.sleep(0.25)
        raise StackError(f"timed out after {self.ready_timeout:.0f}s waiting for the balancer "
                         f"to route to exactly {replicas} healthy replicas")

    def _probe_hostnames(self, replicas: int) -> bool:
        """Through the balancer, see exactly the replicas we expect (bounded).

        It asks /health, which names the replica without touching the counter:
        a probe of / would add increments that no record explains.
        """
        expected = {r.hostname for r in self.replicas()}
        seen = set()
        for _ in range(6 * replicas):
            body = _get_json(self.url + "/health", accept="application/json")
            if isinstance(body, dict) and body.get("hostname"):
                seen.add(body["hostname"])
            if seen == expected:
                return True
        return False

    # -- docker --------------------------------------------------------------

    def _containers(self):
        return self._service_containers(self.service)

    def _service_containers(self, service: str):
        return self._client.containers.list(filters={"label": [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}"]})

    def _hostname(self, container) -> str:
        return container.attrs.get("Config", {}).get("Hostname") or container.id[:12]

    def _run(self, args: list[str], check: bool = True) -> str:
        cmd = [*self._compose, "-f", str(self.file), "-p", self.project, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env,
                              cwd=str(self.file.parent), timeout=600)
        if check and proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise StackError(f"`{' '.join(self._compose)} {args[0]}` failed: "
                             f"{err[-1] if err else 'exit ' + str(proc.returncode)}")
        return proc.stdout


def _number(container) -> int:
    try:
        return int(container.labels.get("com.docker.compose.container-number", 0))
    except ValueError:
        return 0


def _get_text(url: str, accept: str | None = None) -> str | None:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None


def _get_json(url: str, accept: str | None = "application/json"):
    text = _get_text(url, accept)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _free_port_near(port: int) -> int:
    from loadtest.stack.base import free_port

    return port if 1024 < port < 65536 and _is_free(port) else free_port()


def _is_free(port: int) -> bool:
    try:
        check_port_free(port)
        return True
    except StackError:
        return False
