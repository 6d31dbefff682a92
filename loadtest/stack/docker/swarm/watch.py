"""Watching a Swarm stack: Docker's container events (a task's container that dies, with
Docker's time; only from the engine we talk to) and the manager's task list, which covers
the whole cluster; the task tracker (``docker.tasks``) turns both into events."""

from __future__ import annotations

import time

import docker

from loadtest.contract import events as ev
from loadtest.stack.base import StackError
from loadtest.stack.docker import engine
from loadtest.stack.docker.swarm.node import explain
from loadtest.stack.docker.swarm.tasks import Phase


def observe(stack, want_view: bool = False) -> tuple[list[dict], list | None]:
    """Read what changed since last time, record it; the tasks and (when useful) the
    balancer's view, for the caller."""
    try:
        read_events(stack)
        tasks = stack._list_tasks()
    except docker.errors.DockerException as exc:
        raise StackError(f"cannot read Swarm's state: {explain(exc)}") from None
    now = time.time()
    tracker = stack._tracker
    tracker.track(tasks, now)
    listed = {t["ID"] for t in tasks}
    for task in list(tracker.tasks.values()):
        ended_now = tracker.settle(task, now, stack._deaths, stack._node.node_id,
                                   vanished=task.id not in listed, stopping=stack._stopping)
        # Swarm removes a scaled-down task's container the moment it exits, often before
        # a poll sees it end: its log is kept on every poll while it drains (the last
        # read wins), and once more for any task that has just ended.
        if ended_now or task.chosen and task.phase != Phase.ENDED:
            keep_logs(stack, task)
    view = stack._view(tasks) if tracker.wants_view() or want_view else None
    if view is not None:
        tracker.routed({row.address.rsplit(":", 1)[0] for row in view
                        if row.status == "UP"}, now)
    return tasks, view


def keep_logs(stack, task) -> None:
    """Keep an ended task's log now: Swarm removes a scaled-down task's container
    seconds after it exits, and `docker service logs` then no longer has it."""
    if task.node != stack._node.node_id or not task.container:
        return
    try:
        stack._kept_logs[task.hostname] = stack._client.api.logs(task.container,
                                                               timestamps=True)
    except Exception:  # noqa: BLE001 - already gone: the service's log has what it had
        pass


def read_events(stack) -> None:
    """Docker's container `die` events since last time (this engine's containers only)."""
    if stack._events_since is None:
        return
    until = time.time()
    since = stack._events_since - 2  # overlap: an event is stamped before it is published
    for item in stack._client.events(since=f"{since:.9f}", until=f"{until:.9f}", decode=True,
                                    filters={"type": "container", "event": ["die"]}):
        key = (item.get("id"), item.get("timeNano"))
        t = (item.get("timeNano") or 0) / 1e9 or float(item.get("time") or until)
        if key in stack._seen:
            continue
        stack._seen[key] = t
        attrs = item.get("Actor", {}).get("Attributes", {})
        code = attrs.get("exitCode")
        code = int(code) if str(code).lstrip("-").isdigit() else None
        if attrs.get(stack.stack_label) == stack.stack_name:
            service = attrs.get("com.docker.swarm.service.name")
            if service == stack.service:
                stack._deaths.setdefault(attrs.get("com.docker.swarm.task.id", ""), (t, code))
            elif service == stack.store_service and not stack._stopping \
                    and not stack.events.expected("store", t):
                stack._note(ev.STORE_DIED, t, returncode=code)
        elif item.get("id") == stack._traefik_id and not stack._stopping \
                and not stack.events.expected("balancer", t) and not stack._balancer_reported:
            stack._balancer_reported = True
            stack._note(ev.BALANCER_DIED, t, balancer=stack.balancer, returncode=code)
    stack._events_since = until
    stack._seen = {k: v for k, v in stack._seen.items() if v >= since - 5}


def wait_store(stack, timeout: float = 60.0) -> None:
    """Redis answers before the first counter read (the app's health does not need it)."""
    if not stack._services(stack.store_service):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container = stack._store_container(required=False)
        if container is not None and engine.redis_cli(container, "PING")[0] == 0:
            return
        if container is None and stack._store_task() is not None:
            return  # on another node: read over the network when asked
        time.sleep(0.25)
    raise StackError(f"timed out after {timeout:.0f}s waiting for Redis "
                     f"({stack.store_service}) to answer")
