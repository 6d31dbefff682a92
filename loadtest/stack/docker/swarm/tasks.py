"""Swarm's tasks as the harness follows them: a small state machine that returns events.

A task of the app's service goes through named phases, each entered once, each
entry recorded as an event:

    NEW ──running──▶ RUNNING ──routed──▶ IN_SERVICE ──left Traefik──▶ LEAVING
     │                  │                     │                          │
     └──────────────────┴────── it ended ─────┴──────────────────────────┴──▶ ENDED

- RUNNING: Swarm says it runs (healthy: a task is ``running`` only once its health
  check passed): ``task_started``.
- IN_SERVICE: Traefik lists its address UP: ``replica_added``.
- LEAVING: a scale-down chose it and Traefik no longer lists it: ``replica_removing``.
- ENDED: ``replica_removed`` (we scaled it down) or ``replica_died`` (on its own),
  with Docker's time of the container's ``die`` where this engine saw it; nothing
  for a task never in service (``task_shutdown`` tells its story).

Swarm's own view, apart from the phases: ``task_shutdown`` when its desired state
leaves ``running``, ``task_rescheduled`` when a new task takes the slot of one that
ended on its own. Pure bookkeeping over Swarm's task documents: no Docker calls.
"""

from __future__ import annotations

import calendar
import enum
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.contract import events as ev

TERMINAL = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}
#: A local task's death is taken from Docker's events; its task state alone is used
#: only when no event came this long after it.
EVENT_GRACE_S = 3.0


class Phase(enum.IntEnum):
    NEW = 0
    RUNNING = 1
    IN_SERVICE = 2
    LEAVING = 3
    ENDED = 4


@dataclass
class Task:
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
    phase: Phase = Phase.NEW
    added: float | None = None      # when it entered service
    leaving: float | None = None    # when the balancer was seen to stop routing to it
    chosen: bool = False            # a scale-down chose it
    shutdown_noted: bool = False    # Swarm's task_shutdown recorded

    @property
    def running(self) -> bool:
        return self.desired == "running" and self.state == "running"


Note = Callable[..., dict]  # note(event name, t, **payload)


class TaskTracker:
    """Every task of one service seen during the run, and what was recorded of each."""

    def __init__(self, service: str, network: str, port: int, note: Note) -> None:
        self.service, self.network, self.port = service, network, port
        self.note = note
        self.tasks: dict[str, Task] = {}

    # -- Swarm's task documents -------------------------------------------------------

    def track(self, raw_tasks: list[dict], now: float | None = None) -> None:
        """Update each task from Swarm's view; record task_started/_shutdown/_rescheduled."""
        now = now or time.time()
        for raw in sorted(raw_tasks, key=lambda t: timestamp(t.get("CreatedAt")) or 0):
            task = self.tasks.get(raw["ID"])
            if task is None:
                task = self.tasks[raw["ID"]] = self.task_of(raw)
                replaced = self._replaced_in_slot(task)
                if replaced is not None:
                    self.note(ev.TASK_RESCHEDULED, task.created, hostname=task.hostname,
                              task=task.id, replacing=replaced.hostname, slot=task.slot,
                              node=task.node)
            status = raw.get("Status", {})
            task.desired = raw.get("DesiredState", "")
            task.state = status.get("State", "")
            task.status_time = timestamp(status.get("Timestamp"))
            task.err = status.get("Err") or task.err
            container = status.get("ContainerStatus") or {}
            task.container = container.get("ContainerID") or task.container
            if task.state in TERMINAL:
                task.exit_code = container.get("ExitCode", task.exit_code)
                task.terminal_since = task.terminal_since or now
            task.address = address(raw, self.network) or task.address
            task.node = raw.get("NodeID") or task.node
            if task.state == "running" and task.phase == Phase.NEW:
                task.phase = Phase.RUNNING
                self.note(ev.TASK_STARTED, task.status_time or now, hostname=task.hostname,
                          task=task.id, slot=task.slot, node=task.node)
            if task.desired in TERMINAL and not task.shutdown_noted:
                task.shutdown_noted = True
                self.note(ev.TASK_SHUTDOWN, min(timestamp(raw.get("UpdatedAt")) or now, now),
                          hostname=task.hostname, task=task.id, state=task.state,
                          desired=task.desired, **({"error": task.err} if task.err else {}))

    def task_of(self, raw: dict) -> Task:
        status = raw.get("Status", {})
        container = (status.get("ContainerStatus") or {}).get("ContainerID", "")
        return Task(id=raw["ID"], slot=int(raw.get("Slot") or 0), node=raw.get("NodeID", ""),
                    hostname=task_hostname(raw, self.service, container),
                    created=timestamp(raw.get("CreatedAt")) or time.time(),
                    address=address(raw, self.network), container=container)

    def _replaced_in_slot(self, new: Task) -> Task | None:
        """The task this one replaces: an earlier one in its slot that ended on its own."""
        earlier = [t for t in self.tasks.values() if t.slot == new.slot and t.id != new.id
                   and t.created <= new.created and not t.chosen and t.desired in TERMINAL]
        return max(earlier, key=lambda t: t.created) if earlier else None

    # -- the balancer's view -------------------------------------------------------------

    def wants_view(self) -> bool:
        """Some task is about to enter or leave service: the balancer's view decides."""
        return any(t.running and t.phase == Phase.RUNNING or
                   t.chosen and t.phase == Phase.IN_SERVICE for t in self.tasks.values())

    def routed(self, up: set[str], now: float) -> None:
        """``up``: the task addresses Traefik lists UP."""
        for task in self.tasks.values():
            if task.running and task.phase == Phase.RUNNING and task.address in up:
                task.phase, task.added = Phase.IN_SERVICE, now
                self.note(ev.REPLICA_ADDED, now, hostname=task.hostname,
                          address=f"{task.address}:{self.port}", task=task.id, node=task.node)
            elif task.chosen and task.phase == Phase.IN_SERVICE and task.address not in up:
                task.phase, task.leaving = Phase.LEAVING, now
                self.note(ev.REPLICA_REMOVING, now, hostname=task.hostname, task=task.id)

    # -- ends ----------------------------------------------------------------------

    def settle(self, task: Task, now: float, deaths: dict, local_node: str,
               vanished: bool = False, stopping: bool = False) -> bool:
        """Record the end of a task that ended: removed (chosen by a scale-down) or died.
        ``deaths``: task id -> (Docker's die time, exit code). Returns True when it ended
        now (its logs are worth keeping)."""
        if task.phase == Phase.ENDED:
            return False
        death = deaths.get(task.id)
        if death is None:
            if not (vanished or task.state in TERMINAL):
                return False
            local = task.node == local_node
            if local and not vanished and now - (task.terminal_since or now) < EVENT_GRACE_S:
                return False  # Docker's die event, with its exact time, is on its way
            # Without Docker's die event: a terminal state's time is when it ended; a task
            # gone from the list while last seen running ended by the time we noticed.
            when = task.status_time if task.state in TERMINAL and task.status_time else now
            death = (when, task.exit_code)
        was = task.phase
        task.phase = Phase.ENDED
        t, code = death
        if task.leaving is not None:  # it served until the balancer let it go
            t = max(t, task.leaving)
        if was < Phase.IN_SERVICE:
            return True  # never in service: task_shutdown tells its story
        if task.chosen:
            if was == Phase.IN_SERVICE:
                self.note(ev.REPLICA_REMOVING, t, hostname=task.hostname, task=task.id)
            self.note(ev.REPLICA_REMOVED, t, hostname=task.hostname, returncode=code)
        elif not stopping:
            self.note(ev.REPLICA_DIED, t, hostname=task.hostname, returncode=code,
                      reason=task.err or None, task=task.id, node=task.node, noticed=now)
        return True

    def in_service(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.running]

    def by_hostname(self, hostname: str) -> Task | None:
        return next((t for t in self.tasks.values() if t.hostname == hostname), None)


# -- Swarm's documents ----------------------------------------------------------------

def rejected_error(tasks: list[dict], since: float) -> str | None:
    """Why Swarm keeps rejecting new tasks (no such image, no node fits), or None. It
    retries for ever: two rejections since ``since`` are enough to say why now."""
    rejected = [t for t in tasks if t.get("Status", {}).get("State") == "rejected"
                and (timestamp(t.get("CreatedAt")) or 0) >= since - 1]
    if len(rejected) >= 2:
        return rejected[-1].get("Status", {}).get("Err") or "rejected"
    return None


def wanted(task: dict) -> bool:
    """Swarm wants this task to run (``ready``: it waits for the restart delay)."""
    return task.get("DesiredState", "") not in TERMINAL


def address(task: dict, network: str) -> str:
    """The task's address on ``network`` (Traefik's servers are these)."""
    for attachment in task.get("NetworksAttachments") or []:
        if (attachment.get("Network", {}).get("Spec", {}).get("Name")) == network:
            for addr in attachment.get("Addresses") or []:
                return addr.split("/", 1)[0]
    return ""


def task_hostname(task: dict, service: str, container: str) -> str:
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


def timestamp(text: str | None) -> float | None:
    """Docker's RFC 3339 UTC time with nanoseconds, as epoch seconds."""
    match = _TIMESTAMP.match(text or "")
    if not match:
        return None
    seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds + float("0." + (match.group(2) or "0"))


_LOG_LINE = re.compile(r"^(\S+) (\S+?)@(\S+)\s+\| ?(.*)$")


def lines_by_task(text: str) -> dict[str, list[str]]:
    """`docker service logs --timestamps --no-trunc` lines, by task name."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            out.setdefault(match.group(2), []).append(f"{match.group(1)} {match.group(4)}")
    return out
