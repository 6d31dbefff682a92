"""The one interface every stack backend implements, and what they share.

A backend is a class with a handful of verbs; the harness never asks which
backend it holds. The required verbs are ``up``, ``scale``, ``replicas``,
``read_counter`` and ``down``. ``scale`` is a template: it records the
request, lets the backend apply it (``_apply_scale``), waits until the
balancer routes to exactly the new set (``_wait_routed``) and records that.

The optional capabilities (faults, the balancer's view, the parts' processes and CPU) are
small protocols below; a backend implements those it can, and the harness asks with
``isinstance`` (or, before anything starts, on the class: ``FAULT_NEEDS``). ``StackError``
carries a one-line message meant for the user.
"""

from __future__ import annotations

import shutil
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import psutil

from loadtest.contract import events as ev


class StackError(Exception):
    """A problem the user can act on; its message is one line."""


class Unsupported(StackError):
    """The backend does not offer this verb."""


@dataclass
class Replica:
    hostname: str
    address: str
    state: str = "up"  # starting, up, draining, removed, dead, paused
    pid: int | None = None
    started: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ScaleResult:
    level: int
    asked: float
    ready: float
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass
class BalancerRow:
    """One server as the balancer sees it; the same shape for every balancer."""

    server: str             # the replica's hostname where the balancer knows it, else its address
    address: str
    status: str             # UP, DOWN, DRAIN, MAINT, ... (upper case)
    served: int | None = None    # requests the balancer sent there so far
    inflight: int | None = None  # requests in flight there now

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StackSettings:
    """What every backend may be built from; a backend's own options come beside it."""

    port: int = 4000
    url: str | None = None                  # -H, for stacks the harness does not start
    balancer: str = "traefik"
    api_port: int | None = None             # the balancer's API/dashboard on loopback
    run_dir: Path | None = None
    log_dir: Path | None = None
    workdir: Path | None = None
    app_env: dict[str, str] = field(default_factory=dict)
    app_port: int | None = None             # where the app's replicas listen (if known)
    health_path: str | None = None          # the app's health path (None: the backend's default)
    counter_read: str | None = None         # redis:SERVICE:KEY, where the shared counter lives
    ready_timeout: float | None = None      # how long a new replica gets (None: the backend's)
    limits: Any = None                      # stack.limits.Limits: each replica's CPU and memory
    options: dict[str, Any] = field(default_factory=dict)  # the backend's own, by dest name


OptionAdder = Callable[..., Any]


def app_arguments(add: OptionAdder) -> None:
    """Options about the app, the same for every backend (Locust's and the stack CLI's)."""
    add("--app-port", default=0, type=int, metavar="PORT",
        help="The port the app's replicas listen on (Compose default: the service's expose or "
             "ports, else the image's EXPOSE)")
    add("--health-path", default="", metavar="PATH",
        help="Where a replica says it is healthy, e.g. /healthz (default: /health for the "
             "hello app; for another app, none: a replica is healthy once it accepts "
             "connections, or by Docker's own healthcheck where it has one)")
    add("--ready-timeout", default="", metavar="TIME",
        help="How long a new replica gets to become healthy and routed (default: 30s on the "
             "embedded stack, 90s on Compose, 120s on Swarm)")
    add("--counter-read", default="", metavar="redis:SERVICE:KEY",
        help="Where the app's shared counter lives, read before and after the run (default "
             "for the hello app: redis:redis:counter; for another app, not read: the "
             "counter checks are then not applicable)")


#: Every balancer the harness can run (``--balancer``); a backend offers some of them.
BALANCERS: tuple[str, ...] = ("traefik", "haproxy")


class Stack(ABC):
    """The system under test, behind one balancer URL."""

    #: The name users pass to ``--stack``.
    name: ClassVar[str] = "stack"
    #: False for stacks the harness observes but cannot scale or read.
    controlled: ClassVar[bool] = True
    #: Balancers this backend can put in front (the first is the default).
    balancers: ClassVar[tuple[str, ...]] = ()
    #: What the run's summary should call the shared store (for fault names).
    store_name: ClassVar[str] = "redis"

    def __init__(self) -> None:
        self.events = ev.EventLog()
        self.balancer = ""
        self.log_dir: Path | None = None
        # Scaling, faults and teardown change the stack; one at a time.
        self.lock = threading.RLock()
        self._port_claim: socket.socket | None = None

    # -- how a backend is built from the command line --------------------------

    @classmethod
    def add_arguments(cls, add: OptionAdder) -> None:  # noqa: B027 - optional
        """Declare the backend's own options (``add`` is argparse's add_argument)."""
        return None

    @classmethod
    def from_settings(cls, settings: StackSettings) -> Stack:
        raise NotImplementedError

    def preflight(self) -> None:  # noqa: B027 - optional
        """Check what can be checked before anything is created (binaries, ports, engine)."""

    # -- required verbs ------------------------------------------------------

    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def up(self, replicas: int) -> ScaleResult: ...

    def scale(self, replicas: int, by: str = "plan") -> ScaleResult:
        """Return only once the balancer routes to exactly ``replicas`` healthy replicas."""
        if replicas < 1:
            raise StackError(f"cannot scale to {replicas}: need at least 1 replica")
        with self.lock:
            self._require_up()
            asked = time.time()
            self._event(ev.SCALE_ASKED, level=replicas, previous=len(self.replicas()), by=by)
            try:
                added, removed = self._apply_scale(replicas)
                self._wait_routed(replicas)
            except StackError as exc:
                self._event(ev.SCALE_FAILED, level=replicas, error=str(exc))
                raise
            ready = time.time()
            self._event(ev.SCALE_READY, level=replicas, seconds=round(ready - asked, 3),
                        hostnames=[r.hostname for r in self.replicas()])
            return ScaleResult(replicas, asked, ready, added, removed)

    @abstractmethod
    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        """Start or stop replicas; return the hostnames (added, removed)."""

    @abstractmethod
    def _wait_routed(self, replicas: int) -> None:
        """Wait, bounded, until the balancer routes to exactly these replicas."""

    def _require_up(self) -> None:  # noqa: B027 - optional
        """Raise StackError if the stack is not up."""

    @abstractmethod
    def replicas(self) -> list[Replica]:
        """Replicas in service now (up and routed)."""

    @abstractmethod
    def read_counter(self) -> int | None:
        """The shared counter's value, or None where this backend cannot read it."""

    @abstractmethod
    def down(self) -> None:
        """Stop everything this stack started; safe to call twice."""

    # -- optional verbs --------------------------------------------------------

    def poll(self) -> list[dict]:
        """Notice what changed on its own (a replica, the balancer or the store died).

        Called about every quarter second while a run goes on; returns the
        events it recorded. Backends that cannot watch return nothing.
        """
        return []

    def balancer_version(self) -> str | None:
        return None

    def balancer_access_log(self) -> Path | None:
        """Where the balancer logs which server answered each request, by request id
        (Traefik's JSON access log), for ``loadtest.harness.names``; None where it names the
        server in the response itself (HAProxy) or logs nothing."""
        return None

    def balancer_logs(self) -> list[Path]:
        """Logs the balancer writes a line to for every request, in the run directory: the
        first thing given back when its disk runs short (``roles.disk`` cuts them)."""
        access_log = self.balancer_access_log()
        return [access_log] if access_log is not None else []

    def replica_since(self) -> dict[str, float | None]:
        """Replicas in service and since when they are routed (None: not known)."""
        return {r.hostname: r.started for r in self.replicas()}

    def save_logs(self, dest: Path) -> None:
        """Copy whatever logs the backend has into ``dest``."""
        if self.log_dir and self.log_dir.exists() and \
                self.log_dir.resolve() != Path(dest).resolve():
            shutil.copytree(self.log_dir, dest, dirs_exist_ok=True)

    def describe(self) -> dict:
        return {"backend": self.name, "url": self.url, "controlled": self.controlled,
                "balancer": self.balancer or None, "balancer_version": self.balancer_version()}

    # -- shared helpers ----------------------------------------------------------

    def _event(self, name: str, /, **details) -> dict:
        return self.events.add(name, **details)

    def _front(self, port: int, balancer: str, api_port: int | None) -> None:
        """The harness's balancer in front: which one (of ``balancers``), its port and its
        API's (None: chosen at up)."""
        if balancer not in self.balancers:
            raise StackError(f"--balancer {balancer!r}: choose {' or '.join(self.balancers)}")
        self.port = port
        self.balancer = balancer
        self._api_port = api_port

    def _claim_port(self, port: int) -> None:
        """Hold the balancer's port for this run, so a second run on it is refused.

        The claim is an abstract Unix socket: the kernel releases it when this
        process ends, however it ends, and it leaves no file behind. It only
        guards against another scalecheck run; ``check_port_free`` catches
        every other program.
        """
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(f"\0scalecheck-port-{port}")
        except OSError:
            claim.close()
            raise StackError(f"port {port} is in use by another scalecheck run; choose another "
                             "with --stack-port") from None
        self._port_claim = claim

    def _claim_ports(self, port: int, api_port: int | None) -> None:
        """Check the balancer's ports (one line naming a busy one) and claim its port."""
        if self._port_claim is not None:
            return
        check_port_free(port)
        if api_port:
            check_port_free(api_port, hint="--api-port")
        self._claim_port(port)

    def _release_port(self) -> None:
        if self._port_claim is not None:
            self._port_claim.close()
            self._port_claim = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.down()



# -- capabilities: what a backend can do beyond lifecycle and scaling -------------------------
# A backend class implements the protocols it can; the harness asks with isinstance (or,
# before anything starts, issubclass on the class), as Jepsen's db.clj splits DB, Kill,
# Pause and LogFiles. Nothing raises "unsupported" at run time for a fault it planned.


@runtime_checkable
class ReplicaFaults(Protocol):
    def kill_replica(self, hostname: str | None = None, sig: int = signal.SIGKILL) -> str:
        """Send a signal to one replica behind the balancer's back; return its hostname."""

    def pause_replica(self, hostname: str | None = None) -> str:
        """Freeze one replica (SIGSTOP / docker pause); return its hostname."""

    def resume_replica(self, hostname: str) -> None: ...


@runtime_checkable
class ReplicaDeletion(Protocol):
    def delete_replica(self, hostname: str | None = None) -> str:
        """Ask the orchestrator to remove a replica gracefully (it replaces it); its name."""


@runtime_checkable
class ClusterAutoscaling(Protocol):
    def autoscaler_status(self) -> dict | None:
        """The orchestrator's own autoscaler as it reports itself (desired and current
        counts, metrics, conditions), or None before it has said anything."""

    def autoscaler_pods(self) -> list[dict]:
        """What the autoscaler divides: each replica's used and requested CPU (asked only
        when a report is recorded: a metrics API call)."""


@runtime_checkable
class StoreFaults(Protocol):
    def pause_store(self) -> None:
        """Freeze the shared store (Redis) until ``resume_store``."""

    def resume_store(self) -> None: ...

    def restart_store(self, persist: bool) -> dict:
        """Restart the shared store; with ``persist`` its data survives. Returns details."""


@runtime_checkable
class StoreLinkFaults(Protocol):
    def disturb_store_link(self, latency_ms: float = 0.0, reset: bool = False) -> None:
        """Add latency to, or reset connections on, the path from the replicas to the
        store."""

    def heal_store_link(self) -> None: ...


@runtime_checkable
class BalancerFaults(Protocol):
    def restart_balancer(self) -> None: ...


@runtime_checkable
class BalancerView(Protocol):
    def balancer_view(self) -> list[BalancerRow]:
        """What the balancer thinks of each server (state, requests served, in flight)."""


@runtime_checkable
class PartsView(Protocol):
    def parts(self) -> dict[str, list[int]]:
        """The processes of each part, for the CPU sampler: ``balancer``, ``store``,
        ``replica:<name>`` -> root pids (their children count too)."""


@runtime_checkable
class ReplicaCpu(Protocol):
    def replica_cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each replica in service (all its processes)."""


#: What each fault kind needs of the stack, and what that is in words.
FAULT_NEEDS: dict[str, tuple[type, str]] = {
    "kill-replica": (ReplicaFaults, "kill a replica"),
    "pause-replica": (ReplicaFaults, "pause a replica"),
    "delete-replica": (ReplicaDeletion, "delete a replica through its orchestrator"),
    "pause-redis": (StoreFaults, "pause its store"),
    "restart-redis": (StoreFaults, "restart its store"),
    "latency": (StoreLinkFaults, "delay the link to its store"),
    "reset": (StoreLinkFaults, "reset the link to its store"),
    "restart-balancer": (BalancerFaults, "restart its balancer"),
}


def require_binary(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(
            f"{name} not found: install it with `apt-get install {package or name}`"
            " (Debian/Ubuntu), or run `make demo`, which does"
        )
    return path


def check_port_free(port: int, host: str = "127.0.0.1", hint: str = "--stack-port") -> None:
    """Fail with a line naming the port and, when we can tell, who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            owner = _port_owner(port)
            who = f" (held by {owner})" if owner else ""
            raise StackError(
                f"port {port} on {host} is busy{who}; choose another with {hint}") from None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    try:
        check_port_free(port, host)
        return True
    except StackError:
        return False


def _port_owner(port: int) -> str | None:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid:
                    return f"pid {conn.pid} {psutil.Process(conn.pid).name()}"
    except (psutil.Error, OSError):
        return None
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now; callers retry on the rare race with another process."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def api_port_or_free(requested: int | None, default: int = 8080) -> int:
    """The balancer API's port: as asked, else the workshop's 8080 if free, else any free one."""
    if requested:
        return requested
    return default if port_is_free(default) else free_port()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
