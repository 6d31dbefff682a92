"""The Docker Swarm backend: the workshop's services as a swarm stack, Traefik in front.

``up`` joins the engine's swarm (or starts a single-node swarm on 127.0.0.1
when the engine is in none, and leaves it again at ``down``), creates an
attachable overlay network, deploys ``compose/swarm-stack.yml`` with
``docker stack deploy`` under a name of its own (``scalecheck-<8 hex>``) and
starts Traefik as a plain container on that network. Why a plain container:
Swarm cannot publish a port on 127.0.0.1 only (ingress and host-mode ports
listen on every interface), while ``docker run -p 127.0.0.1:…`` can; Traefik's
swarm provider reads the manager's API (the read-only Docker socket) every
second, limited to this stack's services, and sends requests to each task's
own address on the overlay.

Scaling runs ``docker service scale --detach``, which changes the replica
count and nothing else (the SDK's ``Service.scale`` re-posts a spec that
Swarm takes for a new one, and replaces every running task). ``scale(n)``
returns when Traefik's API lists exactly the n running tasks UP and a probe
of ``/health`` through Traefik has seen the n task names: each task names
itself (``hostname: "{{.Task.Name}}"``), so a replaced task is a new replica.

Watching combines two sources: Docker's container events (a task's container
that dies, with Docker's time; only from the engine we talk to) and the
manager's task list, which covers the whole cluster (a task started, shut
down, rescheduled in the slot of one that died). Faults act on containers
through the SDK, so they reach tasks on this engine only.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from loadtest import events as ev
from loadtest.stack.base import (
    BalancerRow,
    Replica,
    ScaleResult,
    Stack,
    StackError,
    StackSettings,
    api_port_or_free,
    port_is_free,
)
from loadtest.stack.compose import COMPOSE_DIR
from loadtest.stack.docker.engine import (
    container_cpu_seconds,
    docker_client,
    freeze_store_for_restart,
    image_env,
    store_restart_result,
)
from loadtest.stack.docker.engine import has_image as _has_image
from loadtest.stack.views import as_int as _int
from loadtest.stack.views import get_json as _get_json

log = logging.getLogger("scalecheck")
STACK_FILE = COMPOSE_DIR / "swarm-stack.yml"
APP, STORE = "hello", "redis"              # the services of the stack file
STACK_LABEL = "com.docker.stack.namespace"  # Docker puts it on the stack's services and tasks
OWNER_LABEL = "scalecheck.swarm.stack"      # ours, on the network and the Traefik container
GWBRIDGE = "docker_gwbridge"
SWARM_PORT = 2377
TERMINAL = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
DEFAULT_IMAGES = {"HELLO_IMAGE": "scalecheck/hello:latest", "TRAEFIK_IMAGE": "traefik:v3.7",
                  "REDIS_IMAGE": "redis:7-alpine"}
#: A local task's death is taken from Docker's events; its task state alone is
#: used only when no event came this long after it.
EVENT_GRACE_S = 3.0


@dataclass
class _Task:
    """What we know of one task of the app service, and what we have recorded of it."""

    id: str
    slot: int
    node: str
    hostname: str
    created: float
    desired: str = ""
    state: str = ""
    address: str = ""
    container: str = ""
    err: str = ""
    exit_code: int | None = None
    status_time: float | None = None
    terminal_since: float | None = None
    added: float | None = None         # replica_added recorded at
    removing: bool = False             # a scale-down chose it
    removing_noted: bool = False
    started_noted: bool = False
    shutdown_noted: bool = False
    ended: bool = False                # replica_removed / replica_died recorded (or not due)


class SwarmStack(Stack):
    name = "swarm"
    balancers = ("traefik",)

    def __init__(
        self,
        port: int = 4000,
        stack_file: Path | str | None = None,
        api_port: int | None = None,
        stack_name: str | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.port = port
        self.file = Path(stack_file or STACK_FILE).resolve()
        self._api_port = api_port
        self.api_port: int | None = None
        self.stack_name = stack_name or f"scalecheck-{uuid.uuid4().hex[:8]}"
        self.network = f"{self.stack_name}-net"
        self.traefik_name = f"{self.stack_name}-traefik"
        self.service = f"{self.stack_name}_{APP}"
        self.store_service = f"{self.stack_name}_{STORE}"
        self.log_dir = Path(log_dir) if log_dir else None
        self.ready_timeout = ready_timeout
        self.env = {**os.environ, **(env or {})}
        self.balancer = "traefik"
        self.counter_key = self.env.get("COUNTER_KEY", "counter")
        self._client = None
        self._node_id = ""
        self._lb_service = APP
        self._traefik_id: str | None = None
        self._touched = False        # up() began: down() has something to look for
        self._made: set[str] = set()  # "network", "stack", "traefik": asked for, so down() looks
        self._started = False
        self._stopping = False
        self._swarm_created = False
        self._gwbridge_existed = True
        self._tasks: dict[str, _Task] = {}
        self._deaths: dict[str, tuple[float, int | None]] = {}  # task id -> Docker's die
        self._seen: dict[tuple, float] = {}
        self._events_since: float | None = None
        self._unreported: list[dict] = []
        self._paused: set[str] = set()
        self._kept_logs: dict[str, bytes] = {}  # hostname -> log of a task that ended
        self._quiet: dict[str, list[list[float]]] = {"balancer": [], "store": []}
        self._balancer_reported = False

    # -- how it is built ---------------------------------------------------------------

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--swarm-stack-file", default="", metavar="FILE",
            help="--stack swarm: the stack file for `docker stack deploy` (default: "
                 "compose/swarm-stack.yml; needs services hello and redis on the external "
                 "network ${SCALECHECK_NET})")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> SwarmStack:
        opts = settings.options
        return cls(port=settings.port, stack_file=opts.get("swarm_stack_file") or None,
                   api_port=settings.api_port, log_dir=settings.log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict:
        return {**super().describe(), "stack": self.stack_name, "stack_file": str(self.file),
                "network": self.network, "traefik_container": self.traefik_name,
                "swarm_created": self._swarm_created, "swarm_node": self._node_id or None,
                "balancer_api": f"http://127.0.0.1:{self.api_port}" if self.api_port else None,
                "images": {k: self.env.get(k) for k in DEFAULT_IMAGES if self.env.get(k)}}

    # -- up ------------------------------------------------------------------------------

    def preflight(self) -> None:
        if not self.file.exists():
            raise StackError(f"stack file not found: {self.file}")
        if shutil.which("docker") is None:
            raise StackError("the docker command is not installed (Debian: apt-get install "
                             "docker.io); --stack swarm deploys with `docker stack deploy`")
        self._client = self._client or docker_client()
        swarm = self._swarm_info()
        state = swarm.get("LocalNodeState")
        if state == "active" and not swarm.get("ControlAvailable"):
            raise StackError("this Docker engine is a swarm worker: point DOCKER_HOST at a "
                             "manager of the swarm")
        if state not in ("active", "inactive"):
            raise StackError(f"this Docker engine's swarm is {state!r}"
                             f"{': ' + swarm['Error'] if swarm.get('Error') else ''}; "
                             "fix it (docker swarm leave --force) or use --stack compose")
        if state == "inactive" and not port_is_free(SWARM_PORT):
            raise StackError(f"port {SWARM_PORT} on 127.0.0.1 is busy; a single-node swarm "
                             "needs it for its manager")
        self._claim_ports(self.port, self._api_port)

    def up(self, replicas: int) -> ScaleResult:
        self.preflight()
        self.api_port = api_port_or_free(self._api_port)
        for var, image in image_env(self._client, self.env).items():
            if var in DEFAULT_IMAGES:
                log.info("scalecheck: no registry image for %s here; using the local %s",
                         var, image)
                self.env[var] = image
        self._touched = True
        self._events_since = time.time()
        self._join_swarm()
        self._create_network()
        self._deploy()
        self._start_traefik()
        self._started = True
        self._wait_store()
        return self.scale(replicas, by="up")

    def _join_swarm(self) -> None:
        """Use the engine's swarm, or start a single-node one that only listens on 127.0.0.1."""
        import docker

        if self._swarm_info().get("LocalNodeState") == "inactive":
            self._gwbridge_existed = bool(self._network_ids(GWBRIDGE))
            self._swarm_created = True  # before the call: down() must leave even if we are cut
            try:
                self._client.swarm.init(advertise_addr="127.0.0.1",
                                        listen_addr=f"127.0.0.1:{SWARM_PORT}")
            except docker.errors.APIError as exc:
                self._swarm_created = False
                raise StackError(f"cannot start a single-node swarm: {_explain(exc)}") from None
            log.info("scalecheck: started a single-node swarm on 127.0.0.1 (left again at the end)")
        self._node_id = self._swarm_info().get("NodeID", "")

    def _create_network(self) -> None:
        import docker

        self._made.add("network")
        try:
            self._client.networks.create(self.network, driver="overlay", attachable=True,
                                         labels={OWNER_LABEL: self.stack_name})
        except docker.errors.APIError as exc:
            raise StackError(f"cannot create the overlay network {self.network}: "
                             f"{_explain(exc)}") from None

    def _deploy(self) -> None:
        self._made.add("stack")
        resolve = "never" if _has_image(self._client, self._image("HELLO_IMAGE")) else "always"
        self._docker(["stack", "deploy", "--resolve-image", resolve, "-c", str(self.file),
                      self.stack_name])
        names = {s.name for s in self._client.services.list(
            filters={"label": f"{STACK_LABEL}={self.stack_name}"})}
        if self.service not in names:
            have = ", ".join(sorted(n.removeprefix(self.stack_name + "_") for n in names))
            raise StackError(f"{self.file.name} has no service {APP!r} (it has: {have or 'none'})")
        labels = self._client.api.inspect_service(self.service)["Spec"].get("Labels") or {}
        found = [m.group(1) for key in labels
                 if (m := re.fullmatch(r"traefik\.http\.services\.([^.]+)\.loadbalancer\..+", key))]
        self._lb_service = found[0] if found else self.service.replace("_", "-")

    def _start_traefik(self) -> None:
        import docker

        args = [
            "--providers.swarm=true",
            "--providers.swarm.endpoint=unix:///var/run/docker.sock",
            "--providers.swarm.exposedbydefault=false",
            f"--providers.swarm.network={self.network}",
            # The swarm provider polls (15 s by default); it has no event watch.
            "--providers.swarm.refreshSeconds=1s",
            # Only this stack: another stack's `hello` router would clash with ours.
            f"--providers.swarm.constraints=Label(`{STACK_LABEL}`,`{self.stack_name}`)",
            "--providers.providersThrottleDuration=200ms",
            # A killed task's address gives no RST on the overlay: fail in 1 s, not 30 s.
            "--serversTransport.forwardingTimeouts.dialTimeout=1s",
            "--entrypoints.web.address=:80",
            "--entrypoints.traefik.address=:8080",
            "--api.dashboard=true", "--api.insecure=true", "--ping=true",
            "--log.level=INFO",
            "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
        ]
        self._made.add("traefik")
        try:
            container = self._client.containers.run(
                self._image("TRAEFIK_IMAGE"), args, name=self.traefik_name, detach=True,
                network=self.network, labels={OWNER_LABEL: self.stack_name},
                ports={"80/tcp": ("127.0.0.1", self.port),
                       "8080/tcp": ("127.0.0.1", self.api_port)},
                volumes={self._socket_path(): {"bind": "/var/run/docker.sock", "mode": "ro"}})
        except docker.errors.DockerException as exc:
            raise StackError(f"cannot start Traefik: {_explain(exc)}") from None
        self._traefik_id = container.id

    def _wait_store(self, timeout: float = 60.0) -> None:
        """Redis answers before the first counter read (the app's health does not need it)."""
        if not self._services(self.store_service):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container = self._store_container(required=False)
            if container is not None and container.exec_run(["redis-cli", "PING"])[0] == 0:
                return
            if container is None and self._store_task() is not None:
                return  # on another node: read over the network when asked
            time.sleep(0.25)
        raise StackError(f"timed out after {timeout:.0f}s waiting for Redis "
                         f"({self.store_service}) to answer")

    def _require_up(self) -> None:
        if not self._started:
            raise StackError("the stack is not up")

    # -- scaling ---------------------------------------------------------------------

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        before = {t["ID"] for t in self._list_tasks() if _wanted(t)}
        self._docker(["service", "scale", "--detach", f"{self.service}={replicas}"])
        deadline = time.monotonic() + 30
        while True:  # Swarm creates the new tasks, or picks the ones to remove, in ~0.1 s
            tasks = self._list_tasks()
            wanted = [t for t in tasks if _wanted(t)]
            if len(wanted) == replicas or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self._track(tasks)
        removed = [t["ID"] for t in tasks
                   if t["ID"] in before and t.get("DesiredState") == "remove"]
        for task_id in removed:
            self._tasks[task_id].removing = True
        added = [self._tasks[t["ID"]].hostname for t in wanted if t["ID"] not in before]
        return added, [self._tasks[i].hostname for i in removed]

    def _wait_routed(self, replicas: int) -> None:
        began = time.time()
        deadline = time.monotonic() + self.ready_timeout
        running: dict[str, str] = {}
        up: set[str] = set()
        while time.monotonic() < deadline:
            tasks, view = self._observe(want_view=True)
            self._fail_if_rejected(tasks, began)
            running = {t.hostname: t.address for t in self._tasks.values()
                       if t.desired == "running" and t.state == "running" and t.address}
            up = {row.server for row in view or [] if row.status == "UP"}
            if len(running) == replicas and up == set(running) and self._probe(set(running)):
                return
            time.sleep(0.25)
        failed = [t.err for t in self._tasks.values() if t.err and t.created >= began - 1]
        raise StackError(f"timed out after {self.ready_timeout:.0f}s waiting for Traefik to route "
                         f"to exactly {replicas} tasks (Swarm runs {len(running)}, Traefik has "
                         f"{len(up)} UP)" + (f"; last task error: {failed[-1]}" if failed else ""))

    def _fail_if_rejected(self, tasks: list[dict], since: float) -> None:
        """A task Swarm rejects (no such image, no node fits) is retried for ever: say why now."""
        rejected = [t for t in tasks if t.get("Status", {}).get("State") == "rejected"
                    and (_timestamp(t.get("CreatedAt")) or 0) >= since - 1]
        if len(rejected) >= 2:
            err = rejected[-1].get("Status", {}).get("Err") or "rejected"
            raise StackError(f"Swarm cannot start the {APP} tasks: {err}")

    def _probe(self, expected: set[str]) -> bool:
        """Through Traefik, see exactly the tasks we expect (bounded). /health names the
        replica without touching the counter: a probe of / would add increments that no
        record explains."""
        seen = set()
        for _ in range(6 * len(expected)):
            body = _get_json(self.url + "/health")
            if isinstance(body, dict) and body.get("hostname"):
                seen.add(body["hostname"])
            if seen == expected:
                return True
        return False

    def replicas(self) -> list[Replica]:
        if not self._started:
            return []
        out = []
        for raw in self._list_tasks():
            task = self._tasks.get(raw["ID"]) or self._task_of(raw)
            if raw.get("DesiredState") == "running" and \
                    raw.get("Status", {}).get("State") == "running":
                address = _address(raw, self.network) or task.address
                out.append(Replica(task.hostname, f"{address}:8000",
                                   "paused" if task.hostname in self._paused else "up",
                                   None, task.added))
        return sorted(out, key=lambda r: r.hostname)

    # -- the counter ---------------------------------------------------------------------

    def read_counter(self) -> int | None:
        if self._client is None or not self._started:
            return None
        container = self._store_container(required=False)
        if container is None:
            if self._store_task() is None:
                return None
            return self._counter_over_network()
        code, output = container.exec_run(["redis-cli", "GET", self.counter_key])
        if code != 0:
            raise StackError(f"cannot read the counter in the redis container: {output[:120]!r}")
        return _count(output)

    def _counter_over_network(self) -> int | None:
        """Redis runs on another node, where `docker exec` cannot reach: ask it from a
        throw-away container on the attachable network, on this engine."""
        import docker

        try:
            output = self._client.containers.run(
                self._image("REDIS_IMAGE"), ["redis-cli", "-h", self.store_service, "GET",
                                             self.counter_key],
                network=self.network, remove=True, labels={OWNER_LABEL: self.stack_name})
        except docker.errors.DockerException as exc:
            raise StackError(f"cannot read the counter over {self.network}: "
                             f"{_explain(exc)}") from None
        return _count(output)

    # -- watching ------------------------------------------------------------------------

    def poll(self) -> list[dict]:
        if not self._started or self._stopping:
            return []
        if not self.lock.acquire(blocking=False):
            return []  # a scale change or a fault is under way; it observes as it goes
        try:
            self._observe()
            noticed, self._unreported = self._unreported, []
            return noticed
        finally:
            self.lock.release()

    def _observe(self, want_view: bool = False) -> tuple[list[dict], list[BalancerRow] | None]:
        """Read what changed since last time, record it; the tasks and (when useful) the
        balancer's view, for the caller."""
        import docker

        try:
            self._read_events()
            tasks = self._list_tasks()
        except docker.errors.DockerException as exc:
            raise StackError(f"cannot read Swarm's state: {_explain(exc)}") from None
        now = time.time()
        self._track(tasks, now)
        listed = {t["ID"] for t in tasks}
        for task in list(self._tasks.values()):
            self._settle(task, now, vanished=task.id not in listed)
        pending = any(t.desired == "running" and t.state == "running" and t.added is None
                      for t in self._tasks.values()) or \
            any(t.removing and not t.removing_noted and not t.ended for t in self._tasks.values())
        view = self._view(tasks) if pending or want_view else None
        if view is not None:
            up = {row.address.rsplit(":", 1)[0] for row in view if row.status == "UP"}
            for task in self._tasks.values():
                if task.desired == "running" and task.state == "running" and \
                        task.added is None and task.address in up:
                    task.added = now
                    self._note(ev.REPLICA_ADDED, now, hostname=task.hostname,
                               address=f"{task.address}:8000", task=task.id, node=task.node)
                elif task.removing and not task.removing_noted and not task.ended and \
                        task.added is not None and task.address not in up:
                    task.removing_noted = True
                    self._note(ev.REPLICA_REMOVING, now, hostname=task.hostname, task=task.id)
        return tasks, view

    def _track(self, tasks: list[dict], now: float | None = None) -> None:
        """Update what we know of each task; record task_started/_shutdown/_rescheduled."""
        now = now or time.time()
        for raw in sorted(tasks, key=lambda t: _timestamp(t.get("CreatedAt")) or 0):
            task = self._tasks.get(raw["ID"])
            if task is None:
                task = self._tasks[raw["ID"]] = self._task_of(raw)
                replaced = self._replaced_in_slot(task)
                if replaced is not None:
                    self._note(ev.TASK_RESCHEDULED, task.created, hostname=task.hostname,
                               task=task.id, replacing=replaced.hostname, slot=task.slot,
                               node=task.node)
            status = raw.get("Status", {})
            task.desired = raw.get("DesiredState", "")
            task.state = status.get("State", "")
            task.status_time = _timestamp(status.get("Timestamp"))
            task.err = status.get("Err") or task.err
            container = status.get("ContainerStatus") or {}
            task.container = container.get("ContainerID") or task.container
            if task.state in TERMINAL:
                task.exit_code = container.get("ExitCode", task.exit_code)
                task.terminal_since = task.terminal_since or now
            task.address = _address(raw, self.network) or task.address
            task.node = raw.get("NodeID") or task.node
            if task.state == "running" and not task.started_noted:
                task.started_noted = True
                self._note(ev.TASK_STARTED, task.status_time or now, hostname=task.hostname,
                           task=task.id, slot=task.slot, node=task.node)
            if task.desired in TERMINAL and not task.shutdown_noted:
                task.shutdown_noted = True
                self._note(ev.TASK_SHUTDOWN, min(_timestamp(raw.get("UpdatedAt")) or now, now),
                           hostname=task.hostname, task=task.id, state=task.state,
                           desired=task.desired, **({"error": task.err} if task.err else {}))

    def _replaced_in_slot(self, new: _Task) -> _Task | None:
        """The task this one replaces: an earlier one in its slot that ended on its own."""
        earlier = [t for t in self._tasks.values() if t.slot == new.slot and t.id != new.id
                   and t.created <= new.created and not t.removing and t.desired in TERMINAL]
        return max(earlier, key=lambda t: t.created) if earlier else None

    def _settle(self, task: _Task, now: float, vanished: bool = False) -> None:
        """Record the end of a replica: removed (we scaled it down) or died (on its own)."""
        if task.ended:
            return
        death = self._deaths.get(task.id)
        if death is None:
            if not (vanished or task.state in TERMINAL):
                return
            local = task.node == self._node_id
            if local and not vanished and now - (task.terminal_since or now) < EVENT_GRACE_S:
                return  # Docker's die event, with its exact time, is on its way
            death = (task.status_time or now, task.exit_code)
        task.ended = True
        self._keep_logs(task)
        t, code = death
        if task.added is None:
            return  # never in service: task_shutdown tells its story
        if task.removing:
            if not task.removing_noted:
                task.removing_noted = True
                self._note(ev.REPLICA_REMOVING, t, hostname=task.hostname, task=task.id)
            self._note(ev.REPLICA_REMOVED, t, hostname=task.hostname, returncode=code)
        elif not self._stopping:
            self._note(ev.REPLICA_DIED, t, hostname=task.hostname, returncode=code,
                       reason=task.err or None, task=task.id, node=task.node, noticed=now)

    def _keep_logs(self, task: _Task) -> None:
        """Keep an ended task's log now: Swarm removes a scaled-down task's container
        seconds after it exits, and `docker service logs` then no longer has it."""
        if task.node != self._node_id or not task.container:
            return
        try:
            self._kept_logs[task.hostname] = self._client.api.logs(task.container,
                                                                   timestamps=True)
        except Exception:  # noqa: BLE001 - already gone: the service's log has what it had
            pass

    def _read_events(self) -> None:
        """Docker's container `die` events since last time (this engine's containers only)."""
        if self._events_since is None:
            return
        until = time.time()
        since = self._events_since - 2  # overlap: an event is stamped before it is published
        for item in self._client.events(since=f"{since:.9f}", until=f"{until:.9f}", decode=True,
                                        filters={"type": "container", "event": ["die"]}):
            key = (item.get("id"), item.get("timeNano"))
            t = (item.get("timeNano") or 0) / 1e9 or float(item.get("time") or until)
            if key in self._seen:
                continue
            self._seen[key] = t
            attrs = item.get("Actor", {}).get("Attributes", {})
            code = _int(attrs.get("exitCode"))
            if attrs.get(STACK_LABEL) == self.stack_name:
                service = attrs.get("com.docker.swarm.service.name")
                if service == self.service:
                    self._deaths.setdefault(attrs.get("com.docker.swarm.task.id", ""), (t, code))
                elif service == self.store_service and not self._stopping \
                        and not self._quiet_at("store", t):
                    self._note(ev.STORE_DIED, t, returncode=code)
            elif item.get("id") == self._traefik_id and not self._stopping \
                    and not self._quiet_at("balancer", t) and not self._balancer_reported:
                self._balancer_reported = True
                self._note(ev.BALANCER_DIED, t, balancer=self.balancer, returncode=code)
        self._events_since = until
        self._seen = {k: v for k, v in self._seen.items() if v >= since - 5}

    def _note(self, kind: str, t: float, **details) -> dict:
        event = self.events.add(kind, t, **details)
        self._unreported.append(event)
        return event

    def _quiet_at(self, part: str, t: float) -> bool:
        """Whether ``t`` falls while we were restarting that part ourselves."""
        return any(a - 0.5 <= t <= (b if b is not None else float("inf")) + 0.5
                   for a, b in self._quiet[part])

    # -- faults ----------------------------------------------------------------------

    def kill_replica(self, hostname: str | None = None, sig: int = signal.SIGKILL) -> str:
        """Signal a task's container; Swarm then starts a new task in its slot (recorded as
        task_rescheduled, and replica_added once Traefik routes to it)."""
        with self.lock:
            task = self._local_task(hostname)
            sent = time.time()
            self._container(task.container, task.hostname).kill(signal=int(sig))
            self._event(ev.REPLICA_SIGNALLED, hostname=task.hostname, signal=int(sig),
                        task=task.id)["t"] = sent
            return task.hostname

    def pause_replica(self, hostname: str | None = None) -> str:
        """Freeze a task's container (docker pause). Swarm does not react: Docker runs no
        health check in a paused container (measured: paused 25 s, neither failed nor
        replaced), so only Traefik's own health check takes it out of rotation."""
        with self.lock:
            task = self._local_task(hostname)
            self._container(task.container, task.hostname).pause()
            self._paused.add(task.hostname)
            return task.hostname

    def resume_replica(self, hostname: str) -> None:
        import docker

        self._paused.discard(hostname)
        task = next((t for t in self._tasks.values() if t.hostname == hostname), None)
        try:
            container = self._client.containers.get(task.container) if task else None
        except docker.errors.NotFound:
            container = None
        if container is None:
            # It ended meanwhile (killed, or its node went) and Swarm replaced it.
            log.warning("scalecheck: %s is gone (Swarm replaced it); nothing to resume", hostname)
            return
        if container.status == "paused":
            container.unpause()

    def pause_store(self) -> None:
        self._store_container().pause()

    def resume_store(self) -> None:
        container = self._store_container()
        if container.status == "paused":
            container.unpause()

    def restart_store(self, persist: bool) -> dict:
        """Swarm restarts a task by replacing it: a new container, on the same volume
        (``/data``), where a SAVE made before survives and nothing else does.

        Writes are paused first (CLIENT PAUSE WRITE, until the old task is gone), so the
        counter read before the restart is the last value the old instance gives: the
        analysis splits the history there when the restart loses the counter."""
        redis = self._store_container()
        paused_at, before = freeze_store_for_restart(redis, persist, self.read_counter)
        window = [time.time(), None]
        self._quiet["store"].append(window)
        try:
            self._docker(["service", "update", "--force", "--detach", self.store_service])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                fresh = self._store_container(required=False)
                if fresh is not None and fresh.id != redis.id and \
                        fresh.exec_run(["redis-cli", "PING"])[0] == 0:
                    break
                time.sleep(0.25)
            else:
                raise StackError("Redis did not come back after its restart")
        finally:
            window[1] = time.time()
        return store_restart_result(paused_at, before, persist, self.read_counter())

    def restart_balancer(self) -> None:
        window = [time.time(), None]
        self._quiet["balancer"].append(window)
        try:
            self._container(self._traefik_id or self.traefik_name, "traefik").restart(timeout=10)
            self._wait_routed(len(self.replicas()))
        finally:
            window[1] = time.time()

    def replica_cpu_seconds(self) -> dict[str, float]:
        out = {}
        for replica in self.replicas():
            task = next((t for t in self._tasks.values() if t.hostname == replica.hostname), None)
            if task is None or task.node != self._node_id or not task.container:
                continue
            try:
                container = self._client.containers.get(task.container)
            except Exception:  # noqa: BLE001, S112 - a task that just went: no sample
                continue
            if (seconds := container_cpu_seconds(container)) is not None:
                out[task.hostname] = seconds
        return out

    # -- the balancer ----------------------------------------------------------------

    def balancer_view(self) -> list[BalancerRow]:
        if not self.api_port or not self._started:
            return []
        return self._view(self._list_tasks())

    def _view(self, tasks: list[dict]) -> list[BalancerRow]:
        by_ip = {}  # an address may be reused: the task Swarm wants now wins over one that ended
        for raw in sorted(tasks, key=lambda t: (_wanted(t), _timestamp(t.get("CreatedAt")) or 0)):
            if ip := _address(raw, self.network):
                by_ip[ip] = (self._tasks.get(raw["ID"]) or self._task_of(raw)).hostname
        data = _get_json(f"http://127.0.0.1:{self.api_port}/api/http/services/"
                         f"{self._lb_service}@swarm")
        if not isinstance(data, dict):
            return []
        status = data.get("serverStatus") or {
            s.get("url", ""): "?" for s in (data.get("loadBalancer") or {}).get("servers", [])}
        rows = []
        for url, state in status.items():
            address = url.split("://", 1)[-1]
            rows.append(BalancerRow(by_ip.get(address.rsplit(":", 1)[0], address), address,
                                    str(state).upper()))
        return rows

    def balancer_version(self) -> str | None:
        if not self.api_port or not self._started:
            return None
        data = _get_json(f"http://127.0.0.1:{self.api_port}/api/version")
        return str(data.get("Version")) if isinstance(data, dict) else None

    # -- logs ------------------------------------------------------------------------

    def save_logs(self, dest: Path) -> None:
        """The services' logs (`docker service logs`: every task, on every node), one file
        per task, Traefik's log, its view and Swarm's task history."""
        dest = Path(dest)
        if self._client is None or not self._touched or (dest / f"{APP}.log").exists():
            return
        dest.mkdir(parents=True, exist_ok=True)
        for service, short in ((self.service, APP), (self.store_service, STORE)):
            text = self._docker(["service", "logs", "--timestamps", "--no-trunc", service],
                                check=False, merge=True)
            (dest / f"{short}.log").write_text(text)
            if short == APP:
                for hostname, kept in self._kept_logs.items():
                    (dest / f"{hostname}.log").write_bytes(kept)
                for task_name, lines in _lines_by_task(text).items():
                    (dest / f"{task_name}.log").write_text("\n".join(lines) + "\n")
        try:
            traefik = self._client.containers.get(self._traefik_id or self.traefik_name)
            (dest / "traefik.log").write_bytes(traefik.logs(timestamps=True))
        except Exception:  # noqa: BLE001 - it may be gone already; the rest is saved
            pass
        try:
            (dest / "balancer.json").write_text(json.dumps(
                [r.to_dict() for r in self.balancer_view()], indent=1))
            (dest / "tasks.json").write_text(json.dumps(
                self._client.api.tasks(filters={"service": self.service}), indent=1))
        except Exception:  # noqa: BLE001 - best effort, at the end of a run
            pass

    # -- down ------------------------------------------------------------------------

    def down(self) -> None:
        """Remove everything this run created, waiting until it is gone; never raises.

        Order: the stack's services, their containers (gone, not only stopped), the
        Traefik container, the stack's volumes, the network, then the swarm and the
        ``docker_gwbridge`` network it made, if this run started the swarm."""
        with self.lock:
            if self._touched and self._client is not None:
                if self._started:
                    self._step("reading the last events", self._observe)
                if self._started and self.log_dir is not None:
                    self._step("saving logs", lambda: self.save_logs(self.log_dir))
                self._stopping = True
                self._started = False
                if "stack" in self._made:
                    self._step("removing the stack", self._remove_stack)
                    self._step("recording the last removals", self._last_removals)
                if "traefik" in self._made:
                    self._step("removing Traefik", self._remove_traefik)
                if "stack" in self._made:
                    self._step("removing the stack's volumes", self._remove_volumes)
                if "network" in self._made:
                    self._step("removing the network",
                               lambda: self._remove_network(self.network))
                if self._swarm_created:
                    self._step("leaving the swarm", self._leave_swarm)
                self._made.clear()
                self._touched = False
            self._release_port()

    def _step(self, what: str, action) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - teardown goes on; say what was left
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            log.error("scalecheck: swarm teardown, %s: %s", what, text)

    def _remove_stack(self) -> None:
        import docker

        for container in self._stack_containers(running_only=False):
            if container["State"] == "paused":  # a fault left it frozen: it must hear SIGTERM
                self._client.api.unpause(container["Id"])
        for service in self._services():
            try:
                service.remove()
            except docker.errors.NotFound:
                pass
        # The load is over: stop the app at once instead of letting it drain. Its first
        # SIGTERM starts the drain, a second one ends it (Swarm's own comes 2 s later).
        for _ in range(2):
            for container in self._stack_containers():
                try:
                    self._client.api.kill(container["Id"], signal="SIGTERM")
                except docker.errors.APIError:
                    pass
            time.sleep(0.5)
        deadline = time.monotonic() + 60
        while self._stack_containers(running_only=False) and time.monotonic() < deadline:
            time.sleep(0.25)
        left = self._stack_containers(running_only=False)
        if left:
            raise StackError(f"{len(left)} containers of {self.stack_name} still there after 60 s")

    def _last_removals(self) -> None:
        """Tasks we scaled down that ended while the run was ending: their time of removal."""
        self._read_events()
        now = time.time()
        for task in self._tasks.values():
            if task.removing:
                self._settle(task, now, vanished=True)

    def _remove_traefik(self) -> None:
        import docker

        try:
            self._client.containers.get(self._traefik_id or self.traefik_name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _remove_volumes(self) -> None:
        for volume in self._client.volumes.list(
                filters={"label": f"{STACK_LABEL}={self.stack_name}"}):
            volume.remove(force=True)

    def _remove_network(self, name: str, owned: bool = True) -> None:
        """Remove a network by name, retrying while endpoints linger, and wait until the
        engine no longer lists it: a swarm network removed on the manager stays listed a
        moment (bounded)."""
        import docker

        deadline = time.monotonic() + 30
        while ids := self._network_ids(name):
            try:
                for net_id in ids:
                    network = self._client.networks.get(net_id)
                    if owned and network.attrs.get("Labels", {}).get(OWNER_LABEL) != \
                            self.stack_name:
                        return  # not ours after all: leave it alone
                    network.remove()
            except docker.errors.NotFound:
                pass  # gone meanwhile; the listing will say so
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise StackError(f"network {name} still listed after 30 s")
            time.sleep(0.25)

    def _leave_swarm(self) -> None:
        self._client.swarm.leave(force=True)
        self._swarm_created = False
        if self._gwbridge_existed:
            return
        # Swarm made docker_gwbridge and leaving does not remove it; ours to remove once
        # nothing is attached.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ids = self._network_ids(GWBRIDGE)
            if not ids:
                return
            attached = self._client.api.inspect_network(ids[0]).get("Containers") or {}
            if not attached:
                self._remove_network(GWBRIDGE, owned=False)
                return
            time.sleep(0.25)
        log.warning("scalecheck: %s still has endpoints; left in place", GWBRIDGE)

    # -- docker ----------------------------------------------------------------------

    def _swarm_info(self) -> dict:
        return self._client.info().get("Swarm") or {}

    def _image(self, var: str) -> str:
        return self.env.get(var) or DEFAULT_IMAGES[var]

    def _socket_path(self) -> str:
        """The engine's socket as the engine's host sees it, for Traefik to mount."""
        host = self.env.get("DOCKER_HOST", "")
        return host.removeprefix("unix://") if host.startswith("unix://") else \
            "/var/run/docker.sock"

    def _services(self, name: str | None = None) -> list:
        found = self._client.services.list(filters={"label": f"{STACK_LABEL}={self.stack_name}"})
        return [s for s in found if name is None or s.name == name]

    def _list_tasks(self, service: str | None = None) -> list[dict]:
        import docker

        try:
            return self._client.api.tasks(filters={"service": service or self.service})
        except docker.errors.NotFound:
            return []

    def _task_of(self, raw: dict) -> _Task:
        status = raw.get("Status", {})
        container = (status.get("ContainerStatus") or {}).get("ContainerID", "")
        return _Task(id=raw["ID"], slot=int(raw.get("Slot") or 0), node=raw.get("NodeID", ""),
                     hostname=_hostname(raw, self.service, container),
                     created=_timestamp(raw.get("CreatedAt")) or time.time(),
                     address=_address(raw, self.network), container=container)

    def _network_ids(self, name: str) -> list[str]:
        return [n["Id"] for n in self._client.api.networks(names=[name]) if n["Name"] == name]

    def _stack_containers(self, running_only: bool = True) -> list[dict]:
        """This engine's containers of the stack (low-level list: no per-container inspect,
        which fails on a container that disappears meanwhile)."""
        return self._client.api.containers(all=not running_only, filters={
            "label": f"{STACK_LABEL}={self.stack_name}"})

    def _local_task(self, hostname: str | None) -> _Task:
        self._observe()
        running = [t for t in self._tasks.values()
                   if t.desired == "running" and t.state == "running"]
        if hostname:
            task = next((t for t in running if t.hostname == hostname), None)
            if task is None:
                raise StackError(f"no running replica named {hostname}")
        else:
            local = [t for t in running if t.node == self._node_id]
            if not local:
                raise StackError("no replica runs on this Docker engine")
            task = max(local, key=lambda t: (t.slot, t.created))  # the last, as a rule
        if task.node != self._node_id:
            raise StackError(f"{task.hostname} runs on node {task.node[:12]}; faults reach only "
                             "tasks on the engine the harness talks to")
        return task

    def _container(self, container_id: str, what: str):
        import docker

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
        if task is None or task.get("NodeID") != self._node_id:
            if required:
                raise StackError("no Redis task runs on this Docker engine" if task
                                 else "no Redis task is running")
            return None
        container_id = (task.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        return self._container(container_id, "Redis") if container_id else None

    def _docker(self, args: list[str], check: bool = True, merge: bool = False,
                timeout: float = 120) -> str:
        env = {**self.env, "SCALECHECK_NET": self.network}
        try:
            proc = subprocess.run(["docker", *args], capture_output=not merge, text=True,
                                  env=env, timeout=timeout,
                                  **({"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
                                     if merge else {}))
        except subprocess.TimeoutExpired:
            raise StackError(f"`docker {' '.join(args[:2])}` took over {timeout:.0f} s") from None
        if check and proc.returncode != 0:
            err = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise StackError(f"`docker {' '.join(args[:2])}` failed: "
                             f"{err[-1] if err else 'exit ' + str(proc.returncode)}")
        return proc.stdout or ""


def _wanted(task: dict) -> bool:
    """Swarm wants this task to run (``ready``: it waits for the restart delay)."""
    return task.get("DesiredState", "") not in TERMINAL


def _address(task: dict, network: str) -> str:
    """The task's address on ``network`` (Traefik's servers are these)."""
    for attachment in task.get("NetworksAttachments") or []:
        if (attachment.get("Network", {}).get("Spec", {}).get("Name")) == network:
            for address in attachment.get("Addresses") or []:
                return address.split("/", 1)[0]
    return ""


def _hostname(task: dict, service: str, container: str) -> str:
    """What the task's app says its hostname is: the task's name with the stack file's
    ``hostname: "{{.Task.Name}}"``, Docker's default (the container's short id) without."""
    spec = task.get("Spec", {}).get("ContainerSpec", {}).get("Hostname") or ""
    name = f"{service}.{task.get('Slot')}.{task['ID']}"
    if "{{.Task.Name}}" in spec.replace(" ", ""):
        return name
    if not spec:
        return container[:12] if container else name
    return spec


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z")


def _timestamp(text: str | None) -> float | None:
    """Docker's RFC 3339 UTC time with nanoseconds, as epoch seconds."""
    match = _TIMESTAMP.match(text or "")
    if not match:
        return None
    seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds + float("0." + (match.group(2) or "0"))


def _count(output: bytes) -> int:
    text = output.decode(errors="replace").strip()
    return int(text) if text.lstrip("-").isdigit() else 0


_LOG_LINE = re.compile(r"^(\S+) (\S+?)@(\S+)\s+\| ?(.*)$")


def _lines_by_task(text: str) -> dict[str, list[str]]:
    """`docker service logs --timestamps --no-trunc` lines, by task name."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            out.setdefault(match.group(2), []).append(f"{match.group(1)} {match.group(4)}")
    return out


def _explain(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


__all__ = ["SwarmStack", "STACK_FILE"]
