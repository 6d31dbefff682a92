"""What the Docker backends (Compose, Swarm) share, as Flask's ``Scaffold`` holds what
``Flask`` and ``Blueprint`` share: the engine, the probe through the balancer, the
counter, the store's faults, the replicas' containers. Each backend keeps only what
differs: how it starts, scales and watches its containers.

A subclass provides:

- ``_replica_containers() -> {hostname: container}`` (the replicas running now);
- ``_store_container(required) -> container | None`` (where the counter lives);
- ``_restart_store(container)`` (restart it, and return once the new one answers);
- ``_balancer_view()`` (the balancer's rows, named by replica).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from loadtest.contract import events as ev
from loadtest.contract.wire import SERVER_HEADER
from loadtest.stack.base import BalancerRow, Stack, StackError
from loadtest.stack.docker import engine

log = logging.getLogger("scalecheck")


class DockerStack(Stack):
    """A stack whose replicas are containers of one Docker engine."""

    def __init__(self, port: int, api_port: int | None, log_dir: Path | None,
                 ready_timeout: float, env: dict[str, str] | None,
                 health_path: str | None = "/health") -> None:
        super().__init__()
        self.port = port
        self._api_port = api_port
        self.api_port: int | None = None
        self.log_dir = Path(log_dir) if log_dir else None
        self.ready_timeout = ready_timeout
        self.env = {**os.environ, **(env or {})}
        self.health_path = health_path
        self.counter_key = self.env.get("COUNTER_KEY", "counter")
        self._client = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what a subclass provides ------------------------------------------------------

    def _replica_containers(self) -> dict:
        raise NotImplementedError

    def _store_container(self, required: bool = True):
        raise NotImplementedError

    def _restart_store(self, container) -> None:
        raise NotImplementedError

    def _balancer_view(self) -> list[BalancerRow]:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------

    def _connect(self) -> None:
        self._client = self._client or engine.docker_client()

    def _use_stand_ins(self, wanted: dict[str, tuple[str, str]] = engine.STAND_INS) -> None:
        for var, image in engine.image_env(self._client, self.env, wanted).items():
            log.info("scalecheck: no registry image for %s here; using the local %s", var, image)
            self.env[var] = image

    def _guarded_poll(self, observe) -> list[dict]:
        """Watch only when nothing else changes the stack: a scale change or a fault under
        way expects its own exits, and observes as it goes."""
        if not self.lock.acquire(blocking=False):
            return []
        try:
            return observe()
        finally:
            self.lock.release()

    def balancer_view(self) -> list[BalancerRow]:
        return self._balancer_view()

    def _probe(self, expected: set[str]) -> bool:
        """Through the balancer, see exactly the replicas we expect (bounded). It asks the
        health path, never ``/``: a probe of ``/`` could change the app's state (the
        counter) behind the records' back. A replica is named by HAProxy's header, or by
        the app's own JSON; where no answer names one, every answer must be a 2xx. Without
        a health path there is nothing safe to ask: the balancer's view has to do."""
        if not self.health_path:
            return True
        seen: set[str] = set()
        unnamed = 0
        for _ in range(6 * max(1, len(expected))):
            status, name = _probe_once(self.url + self.health_path)
            if status is None or not 200 <= status < 300:
                return False
            if name:
                seen.add(name)
            else:
                unnamed += 1
            if seen == expected or (not seen and unnamed >= 2 * len(expected)):
                return True
        return False

    # -- the counter and the store ---------------------------------------------------

    def read_counter(self) -> int | None:
        if self._client is None:
            return None
        container = self._store_container(required=False)
        if container is None:
            return None
        return engine.read_redis_counter(container, self.counter_key)

    def pause_store(self) -> None:
        self._store_container().pause()

    def resume_store(self) -> None:
        container = self._store_container()
        container.reload()
        if container.status == "paused":
            container.unpause()

    def restart_store(self, persist: bool) -> dict:
        redis = self._store_container()
        paused_at, before = engine.freeze_store_for_restart(redis, persist, self.read_counter)
        self._restart_store(redis)
        return engine.store_restart_result(paused_at, before, persist, self.read_counter())

    # -- the replicas' containers -------------------------------------------------------

    def _replica_container(self, hostname: str | None):
        running = self._replica_containers()
        if hostname:
            if hostname not in running:
                raise StackError(f"no running replica named {hostname}")
            return hostname, running[hostname]
        if not running:
            raise StackError("no replica is running")
        name = max(running, key=lambda h: _created(running[h]))  # the newest, as a rule
        return name, running[name]

    def kill_replica(self, hostname: str | None = None, sig: int = signal.SIGKILL) -> str:
        name, container = self._replica_container(hostname)
        sent = time.time()
        container.kill(signal=int(sig))
        self._event(ev.REPLICA_SIGNALLED, hostname=name, signal=int(sig))["t"] = sent
        return name

    def pause_replica(self, hostname: str | None = None) -> str:
        name, container = self._replica_container(hostname)
        container.pause()
        return name

    def resume_replica(self, hostname: str) -> None:
        container = self._replica_containers().get(hostname)
        if container is None:
            log.warning("scalecheck: %s is gone; nothing to resume", hostname)
            return
        container.reload()
        if container.status == "paused":
            container.unpause()

    def replica_cpu_seconds(self) -> dict[str, float]:
        out = {}
        for name, container in self._replica_containers().items():
            if (seconds := engine.container_cpu_seconds(container)) is not None:
                out[name] = seconds
        return out


def _created(container) -> str:
    return container.attrs.get("Created", "") if hasattr(container, "attrs") else ""


def _probe_once(url: str) -> tuple[int | None, str | None]:
    """(status, the replica's name) of one request through the balancer."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            status, headers, body = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return None, None
    name = headers.get(SERVER_HEADER)
    if not name:
        try:
            data = json.loads(body)
            name = data.get("hostname") if isinstance(data, dict) else None
        except ValueError:
            name = None
    return status, name
