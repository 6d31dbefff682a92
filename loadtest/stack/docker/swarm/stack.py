"""The Docker Swarm backend: the workshop's services as a swarm stack, Traefik in front.

``up`` joins the engine's swarm (or starts a single-node swarm on 127.0.0.1 when the
engine is in none, and leaves it again at ``down``: see ``docker.swarmnode``),
creates an attachable overlay network, deploys ``compose/swarm-stack.yml`` with
``docker stack deploy`` under a name of its own (``scalecheck-<8 hex>``) and starts
Traefik as a plain container on that network. Why a plain container: Swarm cannot
publish a port on 127.0.0.1 only (ingress and host-mode ports listen on every
interface), while ``docker run -p 127.0.0.1:…`` can; Traefik's swarm provider reads
the manager's API (the read-only Docker socket) every second, limited to this stack's
services, and sends requests to each task's own address on the overlay.

Scaling runs ``docker service scale --detach``, which changes the replica count and
nothing else (the SDK's ``Service.scale`` re-posts a spec that Swarm takes for a new
one, and replaces every running task). ``scale(n)`` returns when Traefik's API lists
exactly the n running tasks UP and a probe of ``/health`` through Traefik has seen
the n task names: each task names itself (``hostname: "{{.Task.Name}}"``), so a
replaced task is a new replica.

Watching combines Docker's container events (a task's container that dies, with
Docker's time; only from the engine we talk to) and the manager's task list, which
covers the whole cluster (``docker.tasks`` follows each task through its phases).
Faults act on containers through the SDK, so they reach tasks on this engine only.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import docker

from loadtest.stack import private
from loadtest.stack.balancers.views import TraefikApi, traefik_rows
from loadtest.stack.base import (
    BalancerRow,
    Replica,
    ScaleResult,
    StackError,
    StackSettings,
    api_port_or_free,
)
from loadtest.stack.docker import engine, socketproxy
from loadtest.stack.docker.base import DockerStack
from loadtest.stack.docker.compose.file import BALANCER_LOG_DIR, swarm_traefik_args
from loadtest.stack.docker.compose.stack import COMPOSE_DIR
from loadtest.stack.docker.swarm import watch as swarmwatch
from loadtest.stack.docker.swarm.down import save_logs, tear_down
from loadtest.stack.docker.swarm.node import SwarmNode, explain
from loadtest.stack.docker.swarm.tasks import (
    TaskTracker,
    address,
    rejected_error,
    timestamp,
    wanted,
)

log = logging.getLogger("scalecheck")
STACK_FILE = COMPOSE_DIR / "swarm-stack.yml"
APP, STORE = "hello", "redis"              # the services of the stack file
APP_PORT = 8000
STACK_LABEL = "com.docker.stack.namespace"  # Docker puts it on the stack's services and tasks
OWNER_LABEL = "scalecheck.swarm.stack"      # ours, on the network and the Traefik container
DEFAULT_IMAGES = {"HELLO_IMAGE": ("scalecheck/hello:latest", "scalecheck/hello:latest"),
                  "TRAEFIK_IMAGE": engine.STAND_INS["TRAEFIK_IMAGE"],
                  "REDIS_IMAGE": engine.STAND_INS["REDIS_IMAGE"],
                  "HAPROXY_IMAGE": engine.STAND_INS["HAPROXY_IMAGE"]}  # the API proxy


class SwarmStack(DockerStack):
    name = "swarm"
    balancers = ("traefik",)
    owner_label, stack_label = OWNER_LABEL, STACK_LABEL

    def __init__(
        self,
        port: int = 4000,
        stack_file: Path | str | None = None,
        api_port: int | None = None,
        stack_name: str | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = 120.0,
        env: dict[str, str] | None = None,
        limits=None,
    ) -> None:
        super().__init__(port, api_port, log_dir, ready_timeout, env)
        self.limits = limits
        self.file = Path(stack_file or STACK_FILE).resolve()
        self.stack_name = stack_name or f"scalecheck-{uuid.uuid4().hex[:8]}"
        self.network = f"{self.stack_name}-net"
        self.traefik_name = f"{self.stack_name}-traefik"
        self.proxy_name = f"{self.stack_name}-docker-api"
        self.proxy_volume = f"{self.stack_name}-docker-api"
        self._proxy_dir: Path | None = None
        self.service = f"{self.stack_name}_{APP}"
        self.store_service = f"{self.stack_name}_{STORE}"
        self.balancer = "traefik"
        self._node: SwarmNode | None = None
        self._lb_service = APP
        self._traefik_id: str | None = None
        self._touched = False        # up() began: down() has something to look for
        self._made: set[str] = set()  # "network", "stack", "traefik": asked for, so down() looks
        self._started = False
        self._stopping = False
        self._tracker = TaskTracker(self.service, self.network, APP_PORT, self._note)
        self._deaths: dict[str, tuple[float, int | None]] = {}  # task id -> Docker's die
        self._seen: dict[tuple, float] = {}
        self._events_since: float | None = None
        self._unreported: list[dict] = []
        self._paused: set[str] = set()
        self._kept_logs: dict[str, bytes] = {}  # hostname -> log of a task that ended
        self._balancer_reported = False

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--swarm-stack-file", default="", metavar="FILE",
            help="--stack swarm: the stack file for `docker stack deploy` (default: "
                 "compose/swarm-stack.yml; needs services hello and redis on the external "
                 "network ${SCALECHECK_NET})")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> SwarmStack:
        return cls(port=settings.port, stack_file=settings.options.get("swarm_stack_file")
                   or None, api_port=settings.api_port, log_dir=settings.log_dir,
                   limits=settings.limits,
                   **({"ready_timeout": settings.ready_timeout} if settings.ready_timeout
                      else {}))

    def describe(self) -> dict:
        node = self._node
        return {**super().describe(), "stack": self.stack_name, "stack_file": str(self.file),
                "network": self.network, "traefik_container": self.traefik_name,
                "swarm_created": bool(node and node.created),
                "swarm_node": (node.node_id or None) if node else None,
                "balancer_api": f"http://127.0.0.1:{self.api_port}" if self.api_port else None,
                "images": {k: self.env.get(k) for k in DEFAULT_IMAGES if self.env.get(k)}}

    # -- up ------------------------------------------------------------------------------

    def preflight(self) -> None:
        if not self.file.exists():
            raise StackError(f"stack file not found: {self.file}")
        if shutil.which("docker") is None:
            raise StackError("the docker command is not installed (Debian: apt-get install "
                             "docker.io); --stack swarm deploys with `docker stack deploy`")
        self._connect()
        self._node = self._node or SwarmNode(self._client)
        self._node.check()
        self._claim_ports(self.port, self._api_port)

    def up(self, replicas: int) -> ScaleResult:
        self.preflight()
        self.api_port = api_port_or_free(self._api_port)
        self._use_stand_ins(DEFAULT_IMAGES)
        self._touched = True
        self._events_since = time.time()
        self._node.join()
        self._create_network()
        self._deploy()
        self._start_traefik()
        self._started = True
        swarmwatch.wait_store(self)
        return self.scale(replicas, by="up")

    def _create_network(self) -> None:
        self._made.add("network")
        self._node.create_network(self.network, {OWNER_LABEL: self.stack_name})

    def _deploy(self) -> None:
        self._made.add("stack")
        resolve = "never" if engine.has_image(self._client, self._image("HELLO_IMAGE")) \
            else "always"
        self._docker(["stack", "deploy", "--resolve-image", resolve, "-c", str(self.file),
                      self.stack_name])
        names = {s.name for s in self._services()}
        if self.service not in names:
            have = ", ".join(sorted(n.removeprefix(self.stack_name + "_") for n in names))
            raise StackError(f"{self.file.name} has no service {APP!r} (it has: {have or 'none'})")
        if self.limits is not None and self.limits.limited:  # Docker's own limits, per task
            self._docker(["service", "update", "--detach", *(
                ["--limit-cpu", f"{self.limits.cpus:g}"] if self.limits.cpus else []), *(
                ["--limit-memory", str(self.limits.memory_bytes)]
                if self.limits.memory_bytes else []), self.service])
        labels = self._client.api.inspect_service(self.service)["Spec"].get("Labels") or {}
        found = [m.group(1) for key in labels
                 if (m := re.fullmatch(r"traefik\.http\.services\.([^.]+)\.loadbalancer\..+", key))]
        self._lb_service = found[0] if found else self.service.replace("_", "-")

    def _start_docker_api_proxy(self) -> None:
        """Traefik reads the engine through a read-only proxy (``socketproxy``), on a
        socket in a volume only the two containers mount; the proxy is on no network."""
        self._made.add("traefik")
        self._proxy_dir = private.private_dir("swarm-proxy")
        os.chmod(self._proxy_dir, 0o755)  # the container's root reads its configuration
        cfg = socketproxy.write_config(self._proxy_dir)
        try:
            self._client.containers.run(
                self._image("HAPROXY_IMAGE"), socketproxy.COMMAND, name=self.proxy_name,
                detach=True, network_mode="none", user="0:0",
                labels={OWNER_LABEL: self.stack_name},
                volumes={engine.socket_path(self.env): {"bind": "/var/run/docker.sock",
                                                        "mode": "rw"},
                         str(cfg): {"bind": socketproxy.CONFIG_IN_CONTAINER, "mode": "ro"},
                         self.proxy_volume: {"bind": socketproxy.SOCKET_DIR, "mode": "rw"}})
        except docker.errors.DockerException as exc:
            raise StackError(f"cannot start the Docker API proxy: {explain(exc)}") from None

    def _start_traefik(self) -> None:
        self._start_docker_api_proxy()
        args = swarm_traefik_args(self.network, self.stack_name, bool(self.log_dir))
        volumes = {self.proxy_volume: {"bind": socketproxy.SOCKET_DIR, "mode": "rw"}}
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            volumes[str(self.log_dir)] = {"bind": BALANCER_LOG_DIR, "mode": "rw"}
        self._made.add("traefik")
        try:
            container = self._client.containers.run(
                self._image("TRAEFIK_IMAGE"), args, name=self.traefik_name, detach=True,
                network=self.network, labels={OWNER_LABEL: self.stack_name},
                ports={"80/tcp": ("127.0.0.1", self.port),
                       "8080/tcp": ("127.0.0.1", self.api_port)}, volumes=volumes)
        except docker.errors.DockerException as exc:
            raise StackError(f"cannot start Traefik: {explain(exc)}") from None
        self._traefik_id = container.id

    def _require_up(self) -> None:
        if not self._started:
            raise StackError("the stack is not up")

    # -- scaling ---------------------------------------------------------------------

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        before = {t["ID"] for t in self._list_tasks() if wanted(t)}
        self._docker(["service", "scale", "--detach", f"{self.service}={replicas}"])
        deadline = time.monotonic() + 30
        while True:  # Swarm creates the new tasks, or picks the ones to remove, in ~0.1 s
            tasks = self._list_tasks()
            now_wanted = [t for t in tasks if wanted(t)]
            if len(now_wanted) == replicas or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self._tracker.track(tasks)
        removed = [t["ID"] for t in tasks
                   if t["ID"] in before and t.get("DesiredState") == "remove"]
        tracked = self._tracker.tasks
        for task_id in removed:
            tracked[task_id].chosen = True
        added = [tracked[t["ID"]].hostname for t in now_wanted if t["ID"] not in before]
        return added, [tracked[i].hostname for i in removed]

    def _wait_routed(self, replicas: int) -> None:
        began = time.time()
        deadline = time.monotonic() + self.ready_timeout
        running: dict[str, str] = {}
        up: set[str] = set()
        while time.monotonic() < deadline:
            tasks, view = swarmwatch.observe(self, want_view=True)
            if (why := rejected_error(tasks, began)) is not None:
                raise StackError(f"Swarm cannot start the {APP} tasks: {why}")
            running = {t.hostname: t.address for t in self._tracker.in_service() if t.address}
            up = {row.server for row in view or [] if row.status == "UP"}
            if len(running) == replicas and up == set(running) and self._probe(set(running)):
                return
            time.sleep(0.25)
        failed = [t.err for t in self._tracker.tasks.values() if t.err and t.created >= began - 1]
        raise StackError(f"timed out after {self.ready_timeout:.0f}s waiting for Traefik to route "
                         f"to exactly {replicas} tasks (Swarm runs {len(running)}, Traefik has "
                         f"{len(up)} UP)" + (f"; last task error: {failed[-1]}" if failed else ""))

    def replicas(self) -> list[Replica]:
        if not self._started:
            return []
        out = []
        for raw in self._list_tasks():
            if raw.get("DesiredState") == "running" and \
                    raw.get("Status", {}).get("State") == "running":
                task = self._tracker.tasks.get(raw["ID"]) or self._tracker.task_of(raw)
                where = address(raw, self.network) or task.address
                out.append(Replica(task.hostname, f"{where}:{APP_PORT}",
                                   "paused" if task.hostname in self._paused else "up",
                                   None, task.added))
        return sorted(out, key=lambda r: r.hostname)

    # -- the counter ---------------------------------------------------------------------

    def read_counter(self) -> int | None:
        if self._client is None or not self._started:
            return None
        if self._store_container(required=False) is None and self._store_task() is not None:
            return self._counter_over_network()
        return super().read_counter()

    def _counter_over_network(self) -> int | None:
        """Redis runs on another node, where `docker exec` cannot reach: ask it from a
        throw-away container on the attachable network, on this engine."""
        return engine.redis_over_network(self._client, self._image("REDIS_IMAGE"),
                                         self.network, self.store_service, self.counter_key,
                                         {OWNER_LABEL: self.stack_name})

    # -- watching ------------------------------------------------------------------------

    def poll(self) -> list[dict]:
        if not self._started or self._stopping:
            return []

        def observe() -> list[dict]:
            swarmwatch.observe(self)
            noticed, self._unreported = self._unreported, []
            return noticed

        return self._guarded_poll(observe)

    def _note(self, name: str, t: float, /, **payload) -> dict:
        event = self.events.add(name, t, **payload)
        self._unreported.append(event)
        return event

    # -- faults ----------------------------------------------------------------------

    def _replica_containers(self) -> dict:
        """The running replicas on this engine (faults and CPU reach only these)."""
        out = {}
        for task in self._tracker.in_service():
            if task.node == self._node.node_id and task.container:
                try:
                    out[task.hostname] = self._client.containers.get(task.container)
                except Exception:  # noqa: BLE001, S112 - a task that just went
                    continue
        return out

    def _replica_container(self, hostname: str | None):
        """Swarm replaces a task it sees fail; the newest local one is the default."""
        with self.lock:
            swarmwatch.observe(self)
            running = self._tracker.in_service()
            if hostname:
                task = next((t for t in running if t.hostname == hostname), None)
                if task is None:
                    raise StackError(f"no running replica named {hostname}")
                if task.node != self._node.node_id:
                    raise StackError(f"{task.hostname} runs on node {task.node[:12]}; faults "
                                     "reach only tasks on the engine the harness talks to")
            else:
                local = [t for t in running if t.node == self._node.node_id]
                if not local:
                    raise StackError("no replica runs on this Docker engine")
                task = max(local, key=lambda t: (t.slot, t.created))  # the last, as a rule
            return task.hostname, self._container(task.container, task.hostname)

    def pause_replica(self, hostname: str | None = None) -> str:
        """Docker runs no health check in a paused container, so Swarm does not react
        (measured: paused 25 s, neither failed nor replaced): Traefik's own health check
        is what takes it out of rotation."""
        name = super().pause_replica(hostname)
        self._paused.add(name)
        return name

    def resume_replica(self, hostname: str) -> None:
        self._paused.discard(hostname)
        task = self._tracker.by_hostname(hostname)
        try:
            container = self._client.containers.get(task.container) if task else None
        except Exception:  # noqa: BLE001 - ended meanwhile (killed, or its node went)
            container = None
        if container is None:
            log.warning("scalecheck: %s is gone (Swarm replaced it); nothing to resume", hostname)
        elif container.status == "paused":
            container.unpause()

    def _restart_store(self, container) -> None:
        """Swarm restarts a task by replacing it: a new container, on the same volume
        (``/data``), where a SAVE made before survives and nothing else does. Writes stay
        paused until the old task is gone."""
        with self.events.expecting("store"):
            self._docker(["service", "update", "--force", "--detach", self.store_service])
            engine.wait_redis_back(lambda: self._new_store(container.id))

    def _new_store(self, old_id: str):
        fresh = self._store_container(required=False)
        return fresh if fresh is not None and fresh.id != old_id else None

    def restart_balancer(self) -> None:
        with self.events.expecting("balancer"):
            self._container(self._traefik_id or self.traefik_name, "traefik").restart(timeout=10)
            self._wait_routed(len(self.replicas()))

    # -- the balancer ----------------------------------------------------------------

    def _balancer_view(self) -> list[BalancerRow]:
        if not self.api_port or not self._started:
            return []
        return self._view(self._list_tasks())

    def _view(self, tasks: list[dict]) -> list[BalancerRow]:
        by_ip = {}  # an address may be reused: the task Swarm wants now wins over one that ended
        for raw in sorted(tasks, key=lambda t: (wanted(t), timestamp(t.get("CreatedAt")) or 0)):
            if ip := address(raw, self.network):
                by_ip[ip] = (self._tracker.tasks.get(raw["ID"]) or
                             self._tracker.task_of(raw)).hostname
        return traefik_rows(TraefikApi(self.api_port).service(f"{self._lb_service}@swarm"),
                            by_ip, by_host=True)

    def balancer_version(self) -> str | None:
        if not self.api_port or not self._started:
            return None
        return TraefikApi(self.api_port).version()

    def balancer_access_log(self) -> Path | None:
        return self.log_dir / "traefik-access.log" if self.log_dir else None

    # -- logs ------------------------------------------------------------------------

    def save_logs(self, dest: Path) -> None:
        """The services' logs (every task, on every node), one file per task, Traefik's
        log, its view and Swarm's task history (see ``docker.swarmdown``)."""
        save_logs(self, Path(dest))

    # -- down ------------------------------------------------------------------------

    def down(self) -> None:
        """Remove everything this run created, waiting until it is gone; never raises
        (see ``docker.swarmdown``)."""
        with self.lock:
            if self._touched and self._client is not None:
                tear_down(self)
                self._made.clear()
                self._touched = False
            self._release_port()

    # -- docker ----------------------------------------------------------------------

    def _image(self, var: str) -> str:
        return self.env.get(var) or DEFAULT_IMAGES[var][0]

    def _services(self, name: str | None = None) -> list:
        found = self._client.services.list(filters={"label": f"{STACK_LABEL}={self.stack_name}"})
        return [s for s in found if name is None or s.name == name]

    def _list_tasks(self, service: str | None = None) -> list[dict]:
        try:
            return self._client.api.tasks(filters={"service": service or self.service})
        except docker.errors.NotFound:
            return []

    def _stack_containers(self, running_only: bool = True) -> list[dict]:
        """This engine's containers of the stack (low-level list: no per-container inspect,
        which fails on a container that disappears meanwhile)."""
        return self._client.api.containers(all=not running_only, filters={
            "label": f"{STACK_LABEL}={self.stack_name}"})

    def _container(self, container_id: str, what: str):
        try:
            return self._client.containers.get(container_id)
        except docker.errors.NotFound:
            raise StackError(f"the container of {what} is gone") from None

    def _store_task(self) -> dict | None:
        tasks = [t for t in self._list_tasks(self.store_service)
                 if t.get("DesiredState") == "running"
                 and t.get("Status", {}).get("State") == "running"]
        return tasks[0] if tasks else None

    def _store_container(self, required: bool = True):
        task = self._store_task()
        if task is None or task.get("NodeID") != self._node.node_id:
            if required:
                raise StackError("no Redis task runs on this Docker engine" if task
                                 else "no Redis task is running")
            return None
        container_id = (task.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        return self._container(container_id, "Redis") if container_id else None

    def _docker(self, args: list[str], check: bool = True, merge: bool = False,
                timeout: float = 120) -> str:
        return engine.run_cli(["docker", *args], {**self.env, "SCALECHECK_NET": self.network},
                              f"docker {' '.join(args[:2])}", check=check, merge=merge,
                              timeout=timeout)


__all__ = ["SwarmStack", "STACK_FILE"]
