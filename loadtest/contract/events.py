"""The events a run records: their names, what each carries, and the one way to make one.

Stacks, the conductor, the autoscaler and the fault injector append events to one
``EventLog``; the run's record writes it to ``run.json`` (``stack_events``) and the
analysis reads it back (this module is part of the run's contract: the analysis
imports it, never the stack). Each event is a dict with ``t`` (epoch seconds: when
it happened, which may be earlier than when it was noticed) and ``event`` (one of the
names below), plus the payload listed beside each name, as Locust documents its
event hooks.

"We caused this" is said one way too: ``EventLog.expecting(part)`` around what the
harness does to a part (restarting the balancer, stopping the store, removing a
replica), and ``expected(part, t)`` when a watcher sees that part stop: a stop the
harness caused is not reported as a death.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager

# -- how long a scale change is judged as a change, not as a steady level ----------------
TRANSITION_MARGIN_S = 1.0
"""After a change is ready, this long is still the change (the analysis's default)."""
TRANSITION_LEAD_S = 1.0
"""Requests that started this long before a change was asked are judged with it."""

# -- the end of a run ----------------------------------------------------------------------
STOP_GRACE_S = 2.0
"""At the end, how long a request in flight may still take (at most the request timeout);
one still waiting then is recorded as stopped in flight."""

# -- scaling, as the stack does it ---------------------------------------------------------
SCALE_ASKED = "scale_asked"
"""level, previous, by: "up" | "plan" | "autoscaler" | "replace-dead"."""
SCALE_READY = "scale_ready"
"""level, seconds (asked -> ready), hostnames: the balancer routes to exactly these."""
SCALE_FAILED = "scale_failed"
"""level, error."""

# -- replicas, one by one -------------------------------------------------------------
REPLICA_ADDED = "replica_added"
"""hostname, address [, pid | container | task, node]: the balancer may route to it from now."""
REPLICA_REMOVING = "replica_removing"
"""hostname: the balancer stops routing new requests to it (a scale-down chose it)."""
REPLICA_REMOVED = "replica_removed"
"""hostname [, returncode]: stopped, after its drain."""
REPLICA_DIED = "replica_died"
"""hostname, returncode [, reason, noticed]: it stopped on its own (or by a fault's kill)."""
REPLICA_SIGNALLED = "replica_signalled"
"""hostname, signal: the fault injector sent it a signal."""

# -- shared parts of the stack ---------------------------------------------------------
BALANCER_DIED = "balancer_died"
"""balancer, returncode."""
STORE_DIED = "store_died"
"""[store,] returncode: the shared store (Redis) stopped on its own."""

# -- Swarm's own view of tasks ------------------------------------------------------------
TASK_STARTED = "task_started"
"""hostname, task, slot, node: the task became running (healthy)."""
TASK_SHUTDOWN = "task_shutdown"
"""hostname, task, state, desired [, error]: its desired state left running."""
TASK_RESCHEDULED = "task_rescheduled"
"""hostname, task, replacing, slot, node: a new task in the slot of one that ended."""

# -- the autoscaler ------------------------------------------------------------------------
AUTOSCALE_DECISION = "autoscale_decision"
"""policy, metric, desired, current, and every intermediate value (see loadtest.autoscale)."""

# -- faults (loadtest.harness.faults) -------------------------------------------------------------
FAULT_ASKED = "fault_asked"
"""fault (index), kind, spec."""
FAULT_APPLIED = "fault_applied"
"""fault, kind, and what it acted on (hostname, ...)."""
FAULT_ENDED = "fault_ended"
"""fault, kind [, counter_before, counter_after, paused_at, ...]."""
FAULT_FAILED = "fault_failed"
"""fault, kind, error."""

#: Ends of a replica's time in service, for the analysis.
OUT_OF_SERVICE = (REPLICA_REMOVING, REPLICA_DIED)


def make_event(name: str, t: float | None = None, /, **payload) -> dict:
    """The one shape of an event (``name`` and ``t`` are positional: a payload may carry
    its own ``kind``, as a fault's does)."""
    return {"t": time.time() if t is None else t, "event": name, **payload}


class EventLog(list):
    """The run's events, in the order they were recorded, and what the harness expects.

    A list (the record writes it as is), so readers need nothing special; writers use
    ``add``. Thread-safe appends: a Compose scale-down finishes in a thread of its own.
    """

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self._lock = threading.Lock()
        self._expected: dict[str, list[list[float]]] = {}
        self._unreported: list[dict] = []

    def add(self, name: str, t: float | None = None, /, **payload) -> dict:
        event = make_event(name, t, **payload)
        with self._lock:
            self.append(event)
            self._unreported.append(event)
        return event

    def unreported(self) -> list[dict]:
        """Events added since the last call (what a watcher has to act on)."""
        with self._lock:
            out, self._unreported = self._unreported, []
        return out

    @contextmanager
    def expecting(self, part: str):
        """While the body runs (and half a second either side), ``part`` stopping is the
        harness's doing: e.g. ``with log.expecting("balancer"): restart it``."""
        window = [time.time(), math.inf]
        self._expected.setdefault(part, []).append(window)
        try:
            yield
        finally:
            window[1] = time.time()

    def expect(self, part: str) -> None:
        """``part`` (e.g. a container's id) stops by the harness's hand, whenever it does."""
        self._expected.setdefault(part, []).append([-math.inf, math.inf])

    def expected(self, part: str, t: float | None = None) -> bool:
        t = time.time() if t is None else t
        return any(a - 0.5 <= t <= b + 0.5 for a, b in self._expected.get(part, ()))
