"""The end of a Swarm run: its logs kept, then everything it created taken down, waiting
until it is gone, never raising (a step that fails is one line in the log, and the next
step runs).

Order: the stack's services, their containers (gone, not only stopped), the Traefik
container, the stack's volumes, the network, then the swarm and the ``docker_gwbridge``
network it made, if this run started the swarm.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import docker

from loadtest.stack import private
from loadtest.stack.base import StackError
from loadtest.stack.docker.swarm import watch as swarmwatch
from loadtest.stack.docker.swarm.tasks import lines_by_task

log = logging.getLogger("scalecheck")


def tear_down(stack) -> None:
    if stack._started:
        _step("reading the last events", lambda: swarmwatch.observe(stack))
    if stack._started and stack.log_dir is not None:
        _step("saving logs", lambda: stack.save_logs(stack.log_dir))
    stack._stopping = True
    stack._started = False
    if "stack" in stack._made:
        _step("removing the stack", lambda: _remove_stack(stack))
        _step("recording the last removals", lambda: _last_removals(stack))
    if "traefik" in stack._made:
        _step("removing Traefik", lambda: _remove_traefik(stack))
    if "stack" in stack._made:
        _step("removing the stack's volumes", lambda: _remove_volumes(stack))
    if "network" in stack._made:
        _step("removing the network", lambda: stack._node.remove_network(
            stack.network, owner=(stack.owner_label, stack.stack_name)))
    if stack._node is not None and stack._node.created:
        _step("leaving the swarm", stack._node.leave)


def _step(what: str, action) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - teardown goes on; say what was left
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log.error("scalecheck: swarm teardown, %s: %s", what, text)


def _remove_stack(stack) -> None:
    client = stack._client
    for container in stack._stack_containers(running_only=False):
        if container["State"] == "paused":  # a fault left it frozen: it must hear SIGTERM
            client.api.unpause(container["Id"])
    for service in stack._services():
        try:
            service.remove()
        except docker.errors.NotFound:
            pass
    # The load is over: stop the app at once instead of letting it drain. Its first
    # SIGTERM starts the drain, a second one ends it (Swarm's own comes 2 s later).
    for _ in range(2):
        for container in stack._stack_containers():
            try:
                client.api.kill(container["Id"], signal="SIGTERM")
            except docker.errors.APIError:
                pass
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while stack._stack_containers(running_only=False) and time.monotonic() < deadline:
        time.sleep(0.25)
    left = stack._stack_containers(running_only=False)
    if left:
        raise StackError(f"{len(left)} containers of {stack.stack_name} still there after 60 s")


def _last_removals(stack) -> None:
    """Tasks we scaled down that ended while the run was ending: their time of removal."""
    swarmwatch.read_events(stack)
    now = time.time()
    for task in stack._tracker.tasks.values():
        if task.chosen and stack._tracker.settle(task, now, stack._deaths,
                                                 stack._node.node_id, vanished=True):
            swarmwatch.keep_logs(stack, task)


def _remove_traefik(stack) -> None:
    """Traefik, then the Docker API proxy it read through, and their shared volume."""
    for name in (stack._traefik_id or stack.traefik_name, stack.proxy_name):
        try:
            stack._client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
    try:
        stack._client.volumes.get(stack.proxy_volume).remove(force=True)
    except docker.errors.NotFound:
        pass
    private.remove(stack._proxy_dir)
    stack._proxy_dir = None


def _remove_volumes(stack) -> None:
    for volume in stack._client.volumes.list(
            filters={"label": f"{stack.stack_label}={stack.stack_name}"}):
        volume.remove(force=True)


def save_logs(stack, dest: Path) -> None:
    """The services' logs (`docker service logs`: every task, on every node), one file
    per task, Traefik's log, its view and Swarm's task history."""
    dest = Path(dest)
    if stack._client is None or not stack._touched or (dest / "hello.log").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for service, short in ((stack.service, "hello"), (stack.store_service, "redis")):
        text = stack._docker(["service", "logs", "--timestamps", "--no-trunc", service],
                             check=False, merge=True)
        (dest / f"{short}.log").write_text(text)
        if short == "hello":
            for hostname, kept in stack._kept_logs.items():
                (dest / f"{hostname}.log").write_bytes(kept)
            for task_name, lines in lines_by_task(text).items():
                (dest / f"{task_name}.log").write_text("\n".join(lines) + "\n")
    try:
        traefik = stack._client.containers.get(stack._traefik_id or stack.traefik_name)
        (dest / "traefik.log").write_bytes(traefik.logs(timestamps=True))
        (dest / "balancer.json").write_text(json.dumps(
            [r.to_dict() for r in stack.balancer_view()], indent=1))
        (dest / "tasks.json").write_text(json.dumps(
            stack._client.api.tasks(filters={"service": stack.service}), indent=1))
    except Exception:  # noqa: BLE001 - best effort, at the end of a run
        pass
