"""The Docker Compose backend: the app's own Compose file, scaled with Compose, behind
the harness's balancer.

The file is the app's (the workshop's ``compose/docker-compose.yml`` by default,
or the user's own with ``--compose-file`` and ``--compose-service``), never
changed on disk: the harness runs a resolved copy in the run directory with its
balancer added (see ``docker.composefile``). Scaling runs ``docker compose up -d
--scale <service>=N`` (or Debian's ``docker-compose`` v1); the Docker SDK lists
the replicas, reads the counter where the user says it lives, watches Docker's
events (a replica that dies is noticed with Docker's time), injects faults and
saves logs. Load and probes go only to ports published on 127.0.0.1.

The balancers:

- **Traefik** with its Docker provider, as in the workshop: it finds the
  replicas by the labels the harness gives the service, and routes only to
  healthy ones (Docker's healthcheck, then its own on the health path).
- **HAProxy**, fed by the harness through its runtime API (published on
  127.0.0.1): a replica is added only once healthy, and a leaving one is
  drained before Compose stops it. (Docker's DNS behind a ``server-template``
  answered 503 at every scale-up: see ``haproxy``.)

A scale-down is *ready* when the users see it: once the balancer no longer
routes to the leaving replicas (and, with HAProxy, nothing is in flight to
them), not once their containers are gone. Compose's stop and removal go on in
the background and are recorded (``replica_removed``) when they end; the next
change waits for them.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import yaml

from loadtest.contract import events as ev
from loadtest.stack import private
from loadtest.stack.balancers.haproxy import HAProxyAdmin, HAProxyServers, haproxy_config
from loadtest.stack.balancers.views import TraefikApi, haproxy_rows, traefik_rows
from loadtest.stack.base import (
    BalancerRow,
    Replica,
    StackError,
    StackSettings,
    api_port_or_free,
)
from loadtest.stack.docker import engine, socketproxy
from loadtest.stack.docker.base import DockerStack
from loadtest.stack.docker.compose import file as cf
from loadtest.stack.docker.compose import scale as composescale
from loadtest.stack.docker.compose import watch as composewatch
from loadtest.stack.processes import REPO_ROOT

log = logging.getLogger("scalecheck")
COMPOSE_DIR = REPO_ROOT / "compose"
#: The workshop's own file: the hello app and Redis, no balancer (the harness adds one).
DEFAULT_FILE = COMPOSE_DIR / "docker-compose.yml"
# Kept for the by-hand workshop files and for the Swarm backend.
FILES = {"traefik": COMPOSE_DIR / "docker-compose-scale.yml",
         "haproxy": COMPOSE_DIR / "docker-compose-haproxy.yml"}
STAND_INS = engine.STAND_INS


class ComposeStack(DockerStack):
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
        workdir: Path | None = None,
        app_port: int | None = None,
        health_path: str | None = None,
        counter_read: str | None = None,
        limits=None,
    ) -> None:
        ours = compose_file is None
        chosen = Path(compose_file or DEFAULT_FILE).resolve()
        # Our app has /health and its counter in the service "redis"; another app has
        # what the user says it has.
        super().__init__(port, api_port, log_dir, ready_timeout, env,
                         health_path or ("/health" if ours else None))
        self.file = chosen
        self.service = service
        self.balancer = balancer or "traefik"
        self.app_port = app_port
        self.project = project or f"scalecheck-{uuid.uuid4().hex[:8]}"
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else \
            Path(tempfile.gettempdir()) / f"scalecheck-{self.project}"
        if counter_read is None and ours:
            counter_read = f"redis:redis:{self.counter_key}"
        self.counter_read = counter_read
        self.limits = limits
        try:
            self.store_service, self.counter_key = (
                cf.counter_location(counter_read)[1:] if counter_read else
                (None, self.counter_key))
        except cf.ComposeFileError as exc:
            raise StackError(str(exc)) from None
        self._compose: list[str] | None = None
        self._scaled: cf.ScaledService | None = None
        self._runtime: HAProxyServers | None = None
        self._admin_dir: Path | None = None  # HAProxy's admin socket, private to us
        self._started = False
        self._events_since: float | None = None
        self._known: dict[str, str] = {}   # container id -> hostname, of every replica seen
        self._removing: dict[str, str] = {}  # container id -> hostname, leaving
        self._routed: set[str] = set()      # hostnames recorded as added
        self._pending: threading.Thread | None = None
        self._pending_error: str | None = None
        self._balancer_reported = False
        self._oom: set[str] = set()  # containers the kernel killed for memory

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--compose-file", default="", metavar="FILE",
            help="--stack compose: the app's Compose file, left unchanged; the harness runs "
                 "a copy with its balancer added (default: compose/docker-compose.yml, the "
                 "hello app and Redis)")
        add("--compose-service", default="hello", metavar="NAME",
            help="--stack compose: the service to scale (default: hello)")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> ComposeStack:
        opts = settings.options
        return cls(port=settings.port, compose_file=opts.get("compose_file") or None,
                   service=opts.get("compose_service") or "hello", api_port=settings.api_port,
                   log_dir=settings.log_dir, balancer=settings.balancer,
                   workdir=settings.workdir, app_port=settings.app_port,
                   health_path=settings.health_path,
                   counter_read=settings.counter_read, limits=settings.limits,
                   **({"ready_timeout": settings.ready_timeout} if settings.ready_timeout
                      else {}))

    def describe(self) -> dict:
        scaled = self._scaled
        return {**super().describe(), "compose_file": str(self.file), "project": self.project,
                "service": self.service, "run_file": str(self._run_file),
                "app_port": scaled.port if scaled else None,
                "app_port_source": scaled.port_source if scaled else None,
                "removed_ports": scaled.removed_ports if scaled else [],
                "health_path": self.health_path or None, "counter_read": self.counter_read,
                "balancer_api": f"http://127.0.0.1:{self.api_port}" if self.api_port else None,
                "images": {k: self.env.get(k) for k in STAND_INS if self.env.get(k)}}

    @property
    def _run_file(self) -> Path:
        return self.workdir / "compose.yml"

    # -- up ------------------------------------------------------------------------

    def preflight(self) -> None:
        if not self.file.exists():
            raise StackError(f"compose file not found: {self.file}")
        self._compose = self._compose or engine.compose_command()
        self._connect()
        self._claim_ports(self.port, self._api_port)

    def up(self, replicas: int):
        self.preflight()
        self.api_port = api_port_or_free(self._api_port)
        self._use_stand_ins()
        resolved = self._resolve()
        image_ports, image_health = engine.image_facts(
            self._client, (resolved["services"].get(self.service) or {}).get("image"))
        try:
            self._scaled = cf.scaled_service(resolved, self.service, self.app_port,
                                             image_ports, image_health)
            if self.store_service and self.store_service not in resolved["services"]:
                raise cf.ComposeFileError(f"--counter-read: service {self.store_service!r} is "
                                          f"not in {self.file.name}")
            spec = self._balancer_spec()
            self.workdir.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(cf.harness_config(resolved, self._scaled, spec, self.limits),
                                  sort_keys=False)
        except cf.ComposeFileError as exc:
            raise StackError(str(exc)) from None
        self._run_file.write_text(text)
        self._started = True
        self._events_since = time.time()
        return self.scale(replicas, by="up")

    def _resolve(self) -> dict:
        """The user's file as Compose reads it (variables, extends, absolute paths)."""
        try:
            text = self._cli(["-f", str(self.file), "config"], "config", project=False)
        except StackError as exc:
            raise StackError(f"{self.file.name} does not parse as a Compose file: "
                             f"{str(exc).split(': ', 1)[-1]}") from None
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise StackError(f"{self.file.name}: Compose's resolved file is not YAML "
                             f"({str(exc).splitlines()[0]})") from None
        if not isinstance(config, dict) or not isinstance(config.get("services"), dict):
            raise StackError(f"{self.file.name} has no services")
        return config

    def _balancer_spec(self) -> cf.BalancerSpec:
        kind = self.balancer
        if kind == "traefik":
            log_dir = self.log_dir or self.workdir / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            return cf.BalancerSpec("traefik", self.env.get("TRAEFIK_IMAGE") or "traefik:v3.7",
                                   self.port, self.api_port, self.health_path,
                                   project=self.project, log_dir=str(log_dir),
                                   docker_socket=engine.socket_path(self.env),
                                   proxy_image=self.env.get("HAPROXY_IMAGE") or "haproxy:2.6",
                                   proxy_cfg=str(socketproxy.write_config(self.workdir)))
        cfg = self.workdir / "haproxy.cfg"
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg.write_text(haproxy_config(cf.ADMIN_SOCKET, 80, 8404, self.health_path, bind=""))
        self._admin_dir = private.private_dir("compose-haproxy")
        self._runtime = HAProxyServers(HAProxyAdmin(str(self._admin_dir / "admin.sock")),
                                       check="inter 200ms fall 2 rise 1")
        return cf.BalancerSpec("haproxy", self.env.get("HAPROXY_IMAGE") or "haproxy:2.6",
                               self.port, self.api_port, self.health_path, project=self.project,
                               admin_dir=str(self._admin_dir), haproxy_cfg=str(cfg))

    def _require_up(self) -> None:
        if not self._started:
            raise StackError("the stack is not up")

    # -- scaling -----------------------------------------------------------------------

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        composescale.join_pending(self)
        current = self._app_containers()
        if replicas < len(current):
            return [], composescale.scale_down(self, current, replicas)
        before = {c.id for c in current}
        self._cli(["up", "-d", "--no-recreate", "--no-build", "--scale",
                   f"{self.service}={replicas}"], "up --scale")
        added = []
        for c in self._app_containers():
            if c.id in before:
                continue
            name = self._hostname(c)
            self._known[c.id] = name
            added.append(name)
            if self._runtime is not None:
                composescale.feed_haproxy(self, c, name)
        return added, []

    def _wait_routed(self, replicas: int) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            expected = {r.hostname: r.address for r in self.replicas()}
            view = self._balancer_view()
            up = {row.server for row in view if row.status == "UP"}
            for name in set(expected) & up - self._routed:  # Traefik routes to it from now
                self._routed.add(name)
                self._event(ev.REPLICA_ADDED, hostname=name, address=expected[name])
            if len(expected) == replicas and up == set(expected) and \
                    self._probe(set(expected)):
                return
            time.sleep(0.1)
        raise StackError(f"timed out after {self.ready_timeout:.0f}s waiting for the balancer "
                         f"to route to exactly {replicas} healthy replicas")

    def replicas(self) -> list[Replica]:
        out = []
        for c in sorted(self._app_containers(), key=composescale.container_number):
            if c.id in self._removing:
                continue
            out.append(Replica(self._hostname(c), f"{self._ip(c)}:{self._port()}",
                               "paused" if c.status == "paused" else "up",
                               c.attrs.get("State", {}).get("Pid"), None))
        return out

    # -- the end ---------------------------------------------------------------------

    def down(self) -> None:
        with self.lock:
            if self._started:
                self._started = False
                try:
                    composescale.join_pending(self)
                except StackError as exc:
                    log.warning("scalecheck: %s", exc)
                if self.log_dir is not None:
                    self.save_logs(self.log_dir)
                engine.unpause_all(self._all_containers())
                self._cli(["down", "-v", "--remove-orphans", "--timeout", "20"], "down",
                          check=False)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            private.remove(self._admin_dir)
            self._admin_dir = None
            self._release_port()

    def save_logs(self, dest: Path) -> None:
        dest = Path(dest)
        if (dest / "compose.log").exists() or not self._compose or not self._run_file.exists():
            return
        dest.mkdir(parents=True, exist_ok=True)
        logs = self._cli(["logs", "--no-color", "--timestamps"], "logs", check=False)
        (dest / "compose.log").write_text(logs)
        try:
            (dest / "balancer.json").write_text(json.dumps(
                [r.to_dict() for r in self.balancer_view()], indent=1))
        except StackError:
            pass

    # -- watching: Docker's events -------------------------------------------------------

    def poll(self) -> list[dict]:
        if not self._started or self._events_since is None:
            return []
        return self._guarded_poll(lambda: composewatch.read_events(self))

    # -- faults --------------------------------------------------------------------------

    def _replica_containers(self) -> dict:
        return {self._hostname(c): c for c in self._app_containers()
                if c.id not in self._removing}

    def _store_container(self, required: bool = True):
        if not self.store_service:
            if required:
                raise StackError("the harness does not know where the app keeps its state "
                                 "(--counter-read redis:SERVICE:KEY)")
            return None
        found = self._service_containers(self.store_service)
        if not found:
            if required:
                raise StackError(f"no {self.store_service} container is running")
            return None
        return found[0]

    def _restart_store(self, container) -> None:
        container.restart(timeout=10)
        engine.wait_redis_back(lambda: self._store_container(required=False), timeout=20)

    def restart_balancer(self) -> None:
        with self.events.expecting("balancer"):
            found = self._service_containers(cf.BALANCER_SERVICE)
            if not found:
                raise StackError("the balancer's container is not running")
            found[0].restart(timeout=10)
            if self._runtime is not None:  # a fresh HAProxy knows no server: feed it again
                self._wait_admin()
                self._runtime.servers = {}
                for name, container in self._replica_containers().items():
                    self._runtime.add(name, f"{self._ip(container)}:{self._port()}")
            self._wait_routed(len(self.replicas()))

    def _wait_admin(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._runtime.admin.command("show backend")
                return
            except StackError:
                time.sleep(0.2)
        raise StackError("HAProxy's runtime API did not come back after its restart")

    # -- the balancer --------------------------------------------------------------------

    def _balancer_view(self) -> list[BalancerRow]:
        if not self.api_port or not self._started:
            return []
        if self._runtime is not None:
            try:
                return haproxy_rows(self._runtime.admin.servers(self._runtime.backend))
            except StackError:
                return []
        by_ip = {self._ip(c): self._hostname(c) for c in self._app_containers()}
        return traefik_rows(TraefikApi(self.api_port).service(f"{cf.TRAEFIK_ROUTER}@docker"),
                            by_ip, by_host=True)

    def parts(self) -> dict[str, list[int]]:
        """The containers' processes (their pids on this machine): the sampler reads them."""
        out: dict[str, list[int]] = {}
        for name, container in self._replica_containers().items():
            if pid := container.attrs.get("State", {}).get("Pid"):
                out[f"replica:{name}"] = [pid]
        for part, service in (("balancer", cf.BALANCER_SERVICE), ("store", self.store_service)):
            found = self._service_containers(service) if service else []
            if found and (pid := found[0].attrs.get("State", {}).get("Pid")):
                out[part] = [pid]
        return out

    def balancer_access_log(self) -> Path | None:
        if self.balancer != "traefik":
            return None
        return (self.log_dir or self.workdir / "logs") / "traefik-access.log"

    def balancer_version(self) -> str | None:
        if self.balancer == "traefik" and self.api_port:
            return TraefikApi(self.api_port).version()
        return None

    # -- docker --------------------------------------------------------------------------

    def _port(self) -> int:
        return self._scaled.port if self._scaled else 8000

    def _network(self) -> str | None:
        if self._scaled is None:
            return None
        return f"{self.project}_{self._scaled.networks[0]}"

    def _ip(self, container) -> str:
        return engine.container_ip(container, self._network())

    def _app_containers(self) -> list:
        return [c for c in self._service_containers(self.service) if c.status in
                ("running", "paused")]

    def _all_containers(self) -> list:
        return self._client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}"]}) if self._client else []

    def _service_containers(self, service: str) -> list:
        return self._client.containers.list(filters={"label": [
            f"com.docker.compose.project={self.project}",
            f"com.docker.compose.service={service}"]})

    def _hostname(self, container) -> str:
        return container.attrs.get("Config", {}).get("Hostname") or container.id[:12]

    def _cli(self, args: list[str], what: str, project: bool = True, check: bool = True) -> str:
        if project:
            # Compose v1 applies deploy.resources.limits only in its compatibility mode.
            compat = ["--compatibility"] if self.limits is not None and self.limits.limited \
                and self._compose == ["docker-compose"] else []
            args = [*compat, "-f", str(self._run_file), "-p", self.project,
                    "--project-directory", str(self.file.parent), *args]
        return engine.run_cli([*self._compose, *args], self.env,
                              f"{' '.join(self._compose)} {what}", cwd=str(self.file.parent),
                              check=check)


__all__ = ["ComposeStack", "DEFAULT_FILE"]
