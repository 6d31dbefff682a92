"""Scaling a Compose stack with the harness's balancer: a new replica fed to HAProxy once
healthy; a scale-down ready when the users see it (the balancer no longer routes to the
leaving replicas), while Compose stops and removes them in the background."""

from __future__ import annotations

import threading
import time

from loadtest.contract import events as ev
from loadtest.stack.base import StackError
from loadtest.stack.docker import engine


def feed_haproxy(stack, container, name: str) -> None:
    """HAProxy: add a new replica once Docker says it is healthy (where it has a
    healthcheck); HAProxy's own check then lets it into rotation."""
    if stack._scaled.has_healthcheck:
        deadline = time.monotonic() + stack.ready_timeout
        while engine.health_status(container) != "healthy":
            if time.monotonic() > deadline:
                raise StackError(f"replica {name} never became healthy (Docker's "
                                 f"healthcheck; see logs/compose.log)")
            time.sleep(0.2)
            container.reload()
    address = f"{stack._ip(container)}:{stack._scaled.port}"
    stack._runtime.add(name, address, timeout=stack.ready_timeout)
    stack._routed.add(name)
    stack._event(ev.REPLICA_ADDED, hostname=name, address=address, container=container.name)


def scale_down(stack, current: list, replicas: int) -> list[str]:
    """As Compose does, the highest-numbered containers go. The balancer stops routing
    to them first (HAProxy: drained, then out; Traefik: they fail its health check
    while they drain on SIGTERM); Compose stops and removes them in the background."""
    victims = sorted(current, key=container_number)[replicas:]
    names = {c.id: stack._hostname(c) for c in victims}
    stack._removing.update(names)
    for cid in names:
        stack.events.expect(cid)  # Compose stops it: no death
    for name in names.values():
        stack._event(ev.REPLICA_REMOVING, hostname=name)
    if stack._runtime is not None:
        leaving = set(names.values()) & set(stack._runtime.servers)
        stack._runtime.begin_removal(leaving)
        stack._runtime.wait_idle(leaving, 10)
        stack._runtime.finish_removal(leaving)
    stack._pending_error = None
    stack._pending = threading.Thread(target=finish_removal, args=(stack, replicas, names),
                                     daemon=True, name="compose-scale-down")
    stack._pending.start()
    return list(names.values())


def finish_removal(stack, replicas: int, names: dict[str, str]) -> None:
    try:
        stack._cli(["up", "-d", "--no-recreate", "--no-build", "--scale",
                   f"{stack.service}={replicas}"], "up --scale")
    except StackError as exc:
        stack._pending_error = str(exc)
        return
    for cid, name in names.items():
        stack._removing.pop(cid, None)
        stack._routed.discard(name)
        stack._event(ev.REPLICA_REMOVED, hostname=name)


def join_pending(stack, timeout: float = 120.0) -> None:
    if stack._pending is not None:
        stack._pending.join(timeout)
        if stack._pending.is_alive():
            raise StackError(f"Compose's scale-down still runs after {timeout:.0f} s")
        stack._pending = None
        if stack._pending_error:
            raise StackError(stack._pending_error)


def container_number(container) -> int:
    """Compose's number of a container (it removes the highest first)."""
    try:
        return int(container.labels.get("com.docker.compose.container-number", 0))
    except ValueError:
        return 0
