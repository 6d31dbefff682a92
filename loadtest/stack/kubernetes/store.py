"""The app's Redis in the cluster: its counter read, its restart and its freeze.

The Redis is the pods behind ``--counter-read``'s Service (``redis:redis:counter`` for
the hello app). Reading and restarting go through the API (``exec redis-cli`` in its
container, with the container's own ``REDIS_PASSWORD`` when it has one), so they
work on any cluster; freezing needs the runtime (containerd's task pause: a process
cannot SIGSTOP its namespace's PID 1 from inside). A restart is ``SHUTDOWN NOSAVE``:
Redis exits, the kubelet starts its container again in the same pod (its volumes
stay: a ``persist`` restart keeps what ``SAVE`` wrote there).
"""

from __future__ import annotations

import time

from loadtest.stack.base import StackError
from loadtest.stack.kubernetes.rest import Kube, KubeError
from loadtest.stack.kubernetes.runtime import Runtime, container_id
from loadtest.stack.kubernetes.tracker import Tracker

#: redis-cli with the container's password, if it has one (never on a command line).
CLI = ('if [ -n "${REDIS_PASSWORD:-}" ]; then export REDISCLI_AUTH="$REDIS_PASSWORD"; fi; '
       'exec redis-cli --no-auth-warning "$@"')


class ClusterStore:
    def __init__(self, kube: Kube, namespace: str, tracker: Tracker, service: str,
                 key: str, runtime: Runtime | None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.tracker = tracker
        self.service = service
        self.key = key
        self.runtime = runtime
        self.frozen: str | None = None  # the container id paused

    def pod(self) -> str:
        pods = [p for p in self.tracker.store_pods() if p.ready] or self.tracker.store_pods()
        if not pods:
            raise StackError(f"no pod of Service {self.service} is running")
        return sorted(p.name for p in pods)[0]

    def cli(self, *args: str, timeout: float = 20.0) -> tuple[int, str]:
        return self.kube.exec(self.namespace, self.pod(), None,
                              ["sh", "-c", CLI, "redis-cli", *args], timeout=timeout)

    def read(self) -> int:
        code, text = self.cli("GET", self.key)
        if code != 0:
            raise StackError(f"cannot read the counter in {self.service}: {text.strip()[:120]!r}")
        text = text.strip()
        return int(text) if text.lstrip("-").isdigit() else 0

    # -- faults ----------------------------------------------------------------------

    def _container(self) -> str:
        if self.runtime is None:
            raise StackError("freezing Redis needs the cluster's container runtime (the "
                             "embedded cluster's); this cluster's is out of reach")
        cid = self.tracker.container_of(self.pod())
        if cid is None:
            raise StackError(f"the pod of {self.service} has no running container")
        return container_id(cid)

    def pause(self) -> None:
        cid = self._container()
        self.runtime.pause(cid)
        self.frozen = cid

    def resume(self) -> None:
        if self.frozen is not None and self.runtime is not None:
            cid, self.frozen = self.frozen, None
            self.runtime.resume(cid)

    def restart(self, persist: bool, read_counter) -> tuple[float, int | None]:
        """Pause writes, read the counter, save it (or drop the dump), shut Redis down and
        wait until its container answers again; (when writes were paused, the counter
        then)."""
        code, out = self.cli("CLIENT", "PAUSE", "10000", "WRITE")
        if code != 0:
            raise StackError(f"cannot pause Redis before its restart: {out.strip()[:120]!r}")
        paused_at = time.time()
        before = read_counter()
        if persist:
            code, out = self.cli("SAVE")
            if code != 0:
                raise StackError(f"Redis would not save before its restart: {out[:120]!r}")
        else:
            self.kube.exec(self.namespace, self.pod(), None, [
                "sh", "-c", CLI.replace('exec redis-cli --no-auth-warning "$@"',
                                        'rm -f "$(redis-cli --no-auth-warning CONFIG GET dir '
                                        '| tail -n1)/dump.rdb"')])
        old = self.tracker.container_of(self.pod())
        try:
            self.cli("SHUTDOWN", "NOSAVE", timeout=10)
        except KubeError:
            pass  # the exec's connection goes with the container
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            current = self.tracker.container_of(self.pod())
            if current and current != old:
                try:
                    if self.cli("PING")[0] == 0:
                        return paused_at, before
                except StackError:
                    pass
            time.sleep(0.3)
        raise StackError("Redis did not come back after its restart")


__all__ = ["ClusterStore"]
