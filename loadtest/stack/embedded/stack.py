"""The embedded stack: real redis-server, replicas and a balancer, no Docker.

Everything listens on loopback. The balancer (Traefik by default, as in the
workshop, or HAProxy) is on ``127.0.0.1:<port>`` (4000 by default) with its
API/dashboard on another loopback port (8080 if free). Replicas are the hello
app (gunicorn) or the user's own command (``--app-cmd``, see ``stack.app``),
started here and handed to the balancer once they answer their health path;
on the way down they leave the balancer's rotation first, get the drain time
to finish what is in flight, and only then SIGTERM (SIGKILL after the stop
grace). Every replica gets a name (``hello-<n>``, or ``app-<n>`` for the
user's command) that is never reused, as a container id would be.

The stack watches its children (``poll``): a replica, the balancer or Redis
that exits on its own is noticed within a poll and recorded with the time.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import psutil

from loadtest.contract import events as ev
from loadtest.contract.plan import DurationTooLong, seconds
from loadtest.stack import processes
from loadtest.stack.balancers import make_balancer
from loadtest.stack.balancers.base import BalancerPaths, LocalBalancer
from loadtest.stack.balancers.traefik import traefik_binary
from loadtest.stack.base import (
    BalancerRow,
    Replica,
    Stack,
    StackError,
    StackSettings,
    api_port_or_free,
    require_binary,
    wait_until,
)
from loadtest.stack.embedded import replicas as localreplicas
from loadtest.stack.embedded.app import AppSpec, parse_app_env
from loadtest.stack.embedded.replicas import ReplicaProcess
from loadtest.stack.embedded.store import LocalStore
from loadtest.stack.limits import Limits, ReplicaCgroups

#: States of a replica that count as in service (routed, or frozen by a fault).
IN_SERVICE = ("up", "paused")

class LocalStack(Stack):
    name = "local"
    balancers = ("traefik", "haproxy")

    def __init__(
        self,
        port: int = 4000,
        workdir: Path | None = None,
        log_dir: Path | None = None,
        app_env: dict[str, str] | None = None,
        balancer: str = "traefik",
        api_port: int | None = None,
        ready_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        store_proxy: bool = False,
        app: AppSpec | None = None,
        counter_key: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__()
        self._front(port, balancer, api_port)
        self._own_workdir = workdir is None
        # A stack of its own (tests, the stack CLI without a directory): made at up().
        self.workdir = Path(workdir) if workdir else Path(tempfile.gettempdir()) / \
            f"scalecheck-{os.getpid()}-{id(self):x}"
        self.log_dir = Path(log_dir) if log_dir else self.workdir / "logs"
        self.app_env = {**os.environ, **(app_env or {})}
        self.app = app or AppSpec()
        self.counter_key = counter_key or self.app_env.get("COUNTER_KEY", "counter")
        # Our app's counter is known; another app's is read only where the user says.
        self.reads_counter = self.app.ours or counter_key is not None
        # Each replica in a cgroup of its own, as a pod's limits put it (root needed).
        self.limits = limits or Limits()
        self.cgroups = ReplicaCgroups(f"local-{port}", self.limits) \
            if self.limits.limited else None
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.store_proxy = store_proxy
        self.store = LocalStore(self.workdir, self.log_dir, self.events,
                                with_password=self.app.takes_redis_password)
        self._lb: LocalBalancer | None = None
        self._replicas: dict[str, ReplicaProcess] = {}
        self._routed_since: dict[str, float] = {}
        self._next_id = 1
        self._up = False
        self._balancer_reported = False

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--app-cmd", default="", metavar="COMMAND",
            help="--stack local: run this command as each replica instead of the hello app; "
                 "{port} is replaced by the replica's port (also in PORT), e.g. 'uvicorn "
                 "shop:app --port {port}'")
        add("--app-env", action="append", default=[], metavar="NAME=VALUE",
            help="--stack local: an environment variable for the replicas (repeat)")
        add("--app-dir", default="", metavar="DIR",
            help="--stack local: the replicas' working directory (default: here)")
        add("--with-redis", action="store_true", default=False,
            help="--stack local --app-cmd: start a redis-server for the app (REDIS_URL, "
                 "REDIS_HOST, REDIS_PORT); implied by --counter-read")
        add("--redis-auth", action="store_true", default=False,
            help="--stack local --app-cmd: the app takes a Redis password, so the Redis the "
                 "harness starts requires one (in REDIS_URL and REDIS_PASSWORD; the hello app "
                 "always gets one); implies --with-redis")
        add("--drain-time", default="", metavar="TIME",
            help="--stack local: how long a leaving replica keeps running after the balancer "
                 "stopped routing to it, before SIGTERM (default: 0.1s for the hello app, "
                 "which drains on its own; 1s for --app-cmd)")
        add("--stop-grace", default="10s", metavar="TIME",
            help="--stack local: from SIGTERM to SIGKILL (default 10s)")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> LocalStack:
        opts = settings.options
        command = str(opts.get("app_cmd") or "").strip() or None
        counter = settings.counter_read
        key = counter.rsplit(":", 1)[-1] if counter else None
        try:
            drain = seconds(opts.get("drain_time") or ("1s" if command else "0.1s"))
            grace = seconds(opts.get("stop_grace") or "10s")
        except DurationTooLong as exc:
            raise StackError(f"--drain-time/--stop-grace: {exc}") from None
        except (ValueError, TypeError):
            raise StackError("--drain-time/--stop-grace: not a duration (e.g. 1s, 500ms)") \
                from None
        if opts.get("app_dir") and not Path(opts["app_dir"]).is_dir():
            raise StackError(f"--app-dir {opts['app_dir']}: no such directory")
        app = AppSpec(command, parse_app_env(opts.get("app_env")), opts.get("app_dir") or None,
                      settings.health_path, drain, grace,
                      with_redis=bool(opts.get("with_redis") or opts.get("redis_auth")
                                      or counter),
                      redis_auth=bool(opts.get("redis_auth")))
        return cls(port=settings.port, workdir=settings.workdir, log_dir=settings.log_dir,
                   app_env=settings.app_env, balancer=settings.balancer,
                   api_port=settings.api_port,
                   store_proxy=bool(opts.get("store_proxy")), app=app, counter_key=key,
                   limits=settings.limits,
                   **({"ready_timeout": settings.ready_timeout} if settings.ready_timeout
                      else {}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str | None:
        return f"http://127.0.0.1:{self._lb.paths.api_port}" if self._lb else None

    def preflight(self) -> None:
        if self.cgroups is not None:
            self.cgroups.preflight()  # one line without the rights: before anything starts
        if self.app.needs_redis:
            require_binary("redis-server")
        if self.balancer == "haproxy":
            require_binary("haproxy")
        else:
            traefik_binary()
        self._claim_ports(self.port, self._api_port)

    # -- required verbs --------------------------------------------------------

    def up(self, replicas: int):
        self.preflight()
        with self.lock:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._up = True
            if self.store_proxy and not self.app.needs_redis:
                raise StackError("faults on the Redis link need a Redis (--with-redis)")
            if self.app.needs_redis:
                self.store.start(with_proxy=self.store_proxy)
            paths = BalancerPaths(self.port, api_port_or_free(self._api_port), self.workdir,
                                  self.log_dir, self.app.check_path)
            self._lb = make_balancer(self.balancer, paths)
            self._lb.start()
            return self.scale(replicas, by="up")

    def _require_up(self) -> None:
        if not self._up or self._lb is None:
            raise StackError("the stack is not up")
        if not self._lb.alive():
            raise StackError(f"{self.balancer} is not running (exit code {self._lb.returncode()})")

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        self.poll()  # a replica that died is out of the count, so scale() replaces it
        # A paused replica is still in service, as a frozen pod is to its orchestrator.
        current = [p for p in self._replicas.values() if p.replica.state in IN_SERVICE]
        if replicas > len(current):
            return localreplicas.add(self, replicas - len(current)), []
        if replicas < len(current):
            # Newest first, as Compose removes the highest-numbered containers.
            victims = sorted(current, key=lambda p: p.replica.started or 0)[replicas:]
            localreplicas.remove(self, victims)
            return [], [p.replica.hostname for p in victims]
        return [], []

    def _wait_routed(self, replicas: int) -> None:
        wait_until(self._routes_in_service, self.ready_timeout,
                   what=f"{self.balancer} to report exactly {replicas} servers UP")

    def _routes_in_service(self) -> bool:
        """The balancer has exactly the replicas in service, each UP, but a paused one,
        which its health check may well have taken out (asked anew each time: a fault may
        pause or resume a replica while a scale waits)."""
        procs = list(self._replicas.values())
        names = {p.replica.hostname for p in procs if p.replica.state in IN_SERVICE}
        paused = {p.replica.hostname for p in procs if p.replica.state == "paused"}
        return self._lb.routes_exactly(names, may_be_down=paused)

    def replicas(self) -> list[Replica]:
        return [p.replica for p in list(self._replicas.values())
                if p.replica.state in IN_SERVICE]

    def read_counter(self) -> int | None:
        if self.store.port is None or not self.reads_counter:
            return None
        return self.store.read(self.counter_key)

    def down(self) -> None:
        with self.lock:
            if not self._up:
                self._release_port()
                self._cleanup_dirs()
                return
            self._up = False
            # Resume whatever a fault left frozen, or it would never see SIGTERM.
            for proc in self._replicas.values():
                if proc.replica.state == "paused":
                    processes.signal_group(proc.popen, signal.SIGCONT)
            processes.stop_all([p.popen for p in self._replicas.values()
                                if p.popen.poll() is None])
            for proc in self._replicas.values():
                if proc.replica.state in ("up", "paused", "starting", "draining"):
                    proc.replica.state = "stopped"
            if self._lb is not None:
                self._lb.close()
            self.store.stop()
            if self.cgroups is not None:
                self.cgroups.close()
            self._release_port()
            self._cleanup_dirs()

    def _cleanup_dirs(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- watching ------------------------------------------------------------------

    def poll(self) -> list[dict]:
        """Notice children that exited on their own; take dead replicas out of the balancer."""
        noticed = []
        if not self._up:
            return noticed
        for proc in list(self._replicas.values()):
            name = proc.replica.hostname
            oom = self.cgroups is not None and proc.replica.state in ("up", "paused") and \
                self.cgroups.oom_killed(name)
            if oom and proc.popen.poll() is None:
                # cgroup v1 kills one process (a worker its arbiter would replace): the
                # replica went over its limit, so it is dead, as a pod OOM-killed is.
                processes.stop(proc.popen, timeout=1, sig=signal.SIGKILL)
            if proc.replica.state in ("up", "paused") and proc.popen.poll() is not None:
                proc.replica.state = "dead"
                self._routed_since.pop(name, None)
                noticed.append(self._event(
                    ev.REPLICA_DIED, hostname=name, returncode=proc.popen.returncode,
                    **({"reason": "out of memory (its cgroup's limit "
                                  f"{self.limits.memory_bytes} bytes)"} if oom else {})))
                if self.cgroups is not None:
                    self.cgroups.release(name)
                if self._lb is not None and self._lb.alive():
                    try:
                        self._lb.forget(proc.replica.hostname)
                    except StackError:
                        pass  # the balancer's own health check takes it out
                processes.stop(proc.popen)
        if self._lb is not None and not self._lb.alive() and not self._balancer_reported \
                and not self.events.expected("balancer"):
            self._balancer_reported = True
            noticed.append(self._event(ev.BALANCER_DIED, balancer=self.balancer,
                                       returncode=self._lb.returncode()))
        if (died := self.store.died()) is not None:
            noticed.append(died)
        return noticed

    # -- optional verbs ------------------------------------------------------------

    def balancer_view(self) -> list[BalancerRow]:
        return self._lb.view() if self._lb is not None else []

    def balancer_version(self) -> str | None:
        return self._lb.version() if self._lb is not None else None

    def balancer_access_log(self) -> Path | None:
        return self.log_dir / "traefik-access.log" if self.balancer == "traefik" else None

    def balancer_logs(self) -> list[Path]:
        """Traefik's access log, or HAProxy's log (a line per request, on its output)."""
        return [self.log_dir / ("traefik-access.log" if self.balancer == "traefik"
                                else "haproxy.log")]

    def replica_cpu_seconds(self) -> dict[str, float]:
        out = {}
        for proc in list(self._replicas.values()):
            if proc.replica.state != "up":
                continue
            try:
                root = psutil.Process(proc.popen.pid)
                tree = [root, *root.children(recursive=True)]
                out[proc.replica.hostname] = sum(p.cpu_times().user + p.cpu_times().system
                                                 for p in tree)
            except psutil.Error:
                continue
        return out

    def replica_since(self) -> dict[str, float | None]:
        return dict(self._routed_since)

    def parts(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        if self._lb is not None and self._lb.process is not None:
            out["balancer"] = [self._lb.process.pid]
        if self.store.popen is not None:
            out["store"] = [self.store.popen.pid]
        for proc in list(self._replicas.values()):
            if proc.replica.state in ("up", "paused", "draining"):
                out[f"replica:{proc.replica.hostname}"] = [proc.popen.pid]
        return out

    def describe(self) -> dict:
        return {**super().describe(), "redis_port": self.store.port,
                "balancer_api": self.api_url, "store_proxy": self.store_proxy,
                "app_cmd": self.app.command, "app_dir": self.app.cwd,
                "health_path": self.app.check_path, "drain_time_s": self.app.drain_time,
                "stop_grace_s": self.app.stop_grace}

    def kill_replica(self, hostname: str | None = None, sig: int = signal.SIGKILL) -> str:
        proc = self._pick(hostname)
        processes.signal_group(proc.popen, sig)
        self._event(ev.REPLICA_SIGNALLED, hostname=proc.replica.hostname, signal=int(sig))
        return proc.replica.hostname

    def pause_replica(self, hostname: str | None = None) -> str:
        proc = self._pick(hostname)
        processes.signal_group(proc.popen, signal.SIGSTOP)
        proc.replica.state = "paused"
        self._event(ev.REPLICA_SIGNALLED, hostname=proc.replica.hostname,
                    signal=int(signal.SIGSTOP))
        return proc.replica.hostname

    def resume_replica(self, hostname: str) -> None:
        proc = self._replicas.get(hostname)
        if proc is None:
            raise StackError(f"no replica named {hostname}")
        processes.signal_group(proc.popen, signal.SIGCONT)
        if proc.replica.state == "paused":
            proc.replica.state = "up"
        self._event(ev.REPLICA_SIGNALLED, hostname=hostname, signal=int(signal.SIGCONT))

    def pause_store(self) -> None:
        self.store.signal(signal.SIGSTOP)

    def resume_store(self) -> None:
        if self.store.popen is not None:
            self.store.signal(signal.SIGCONT)

    def restart_store(self, persist: bool) -> dict:
        return self.store.restart(persist, self.counter_key)

    def restart_balancer(self) -> None:
        self._lb.restart()
        wait_until(self._routes_in_service, self.ready_timeout,
                   what=f"{self.balancer} to route again after its restart")

    def disturb_store_link(self, latency_ms: float = 0.0, reset: bool = False) -> None:
        self.store.disturb_link(latency_ms, reset)

    def heal_store_link(self) -> None:
        self.store.heal_link()

    def _pick(self, hostname: str | None) -> ReplicaProcess:
        if hostname:
            proc = self._replicas.get(hostname)
            if proc is None or proc.replica.state not in ("up", "paused"):
                raise StackError(f"no replica named {hostname} is in service")
            return proc
        up = [p for p in self._replicas.values() if p.replica.state == "up"]
        if not up:
            raise StackError("no replica is in service")
        return max(up, key=lambda p: p.replica.started or 0)  # the newest, as a rule


__all__ = ["LocalStack"]
