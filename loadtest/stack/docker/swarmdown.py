"""Taking a Swarm run down: everything it created, waiting until it is gone, never
raising (a step that fails is one line in the log, and the next step runs).

Order: the stack's services, their containers (gone, not only stopped), the Traefik
container, the stack's volumes, the network, then the swarm and the ``docker_gwbridge``
network it made, if this run started the swarm.
"""

from __future__ import annotations

import logging
import time

from loadtest.stack.base import StackError

log = logging.getLogger("scalecheck")


def tear_down(stack) -> None:
    if stack._started:
        _step("reading the last events", stack._observe)
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
    import docker

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
    stack._read_events()
    now = time.time()
    for task in stack._tracker.tasks.values():
        if task.chosen and stack._tracker.settle(task, now, stack._deaths,
                                                 stack._node.node_id, vanished=True):
            stack._keep_logs(task)


def _remove_traefik(stack) -> None:
    import docker

    try:
        stack._client.containers.get(stack._traefik_id or stack.traefik_name).remove(force=True)
    except docker.errors.NotFound:
        pass


def _remove_volumes(stack) -> None:
    for volume in stack._client.volumes.list(
            filters={"label": f"{stack.stack_label}={stack.stack_name}"}):
        volume.remove(force=True)
