"""Scheduled faults: kill, pause and restart parts of the stack at known times.

The schedule comes from the plan (``--fault 30s:kill-replica`` …); the
conductor calls ``apply_due`` on every tick, and each due fault runs in its
own greenlet through the stack's optional verbs, so every backend that offers
a verb gets the fault. Every fault leaves three events in the run's record:
``fault_asked``, ``fault_applied`` and ``fault_ended`` (or ``fault_failed``
with the reason), linked by ``fault`` (its index in the schedule). A fault
still running when the run ends is undone first (a frozen Redis is woken
before the counter is read).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

from loadtest.contract import events as ev
from loadtest.contract.plan import FaultSpec
from loadtest.stack import Stack, StackError

log = logging.getLogger("scalecheck")


class FaultInjector:
    def __init__(self, schedule: tuple[FaultSpec, ...], stack: Stack, events: list[dict],
                 replicas_hint: int = 1) -> None:
        self.schedule = list(schedule)
        self.stack = stack
        self.events = events
        self.replicas_hint = replicas_hint
        self._next = 0
        self._running: dict[int, gevent.Greenlet] = {}
        self._undo: dict[int, Callable[[], None]] = {}
        self._killed: set[str] = set()

    def apply_due(self, t: float) -> None:
        while self._next < len(self.schedule) and self.schedule[self._next].at <= t:
            index, spec = self._next, self.schedule[self._next]
            self._next += 1
            self._running[index] = gevent.spawn(self._run, index, spec)

    def expects_death(self, hostname: str) -> bool:
        return hostname in self._killed

    def end_all(self) -> None:
        """Undo what is still in effect (resume, heal) and record its end."""
        for index, greenlet in list(self._running.items()):
            if not greenlet.dead:
                # Taken before the kill: the greenlet's own ``finally`` drops it otherwise,
                # and a frozen Redis would stay frozen while the counter is read.
                undo = self._undo.pop(index, None)
                greenlet.kill(block=True)
                if undo is not None:
                    self._safely(index, undo)
                    self._event(ev.FAULT_ENDED, index, cut_short=True)
        self._running.clear()

    # -- one fault ---------------------------------------------------------------------

    def _run(self, index: int, spec: FaultSpec) -> None:
        self._event(ev.FAULT_ASKED, index, kind=spec.kind, spec=spec.text, planned_at=spec.at)
        try:
            getattr(self, "_" + spec.kind.replace("-", "_"))(index, spec)
        except StackError as exc:
            log.error("scalecheck: fault %s failed: %s", spec.text, exc)
            self._event(ev.FAULT_FAILED, index, kind=spec.kind, error=str(exc))
        finally:
            self._undo.pop(index, None)

    def _hold(self, index: int, spec: FaultSpec, undo: Callable[[], None], **applied) -> None:
        """Applied now; undone after the fault's duration (or at the run's end)."""
        self._undo[index] = undo
        self._event(ev.FAULT_APPLIED, index, kind=spec.kind, duration=spec.duration, **applied)
        gevent.sleep(spec.duration)
        self._undo.pop(index, None)
        undo()
        self._event(ev.FAULT_ENDED, index, kind=spec.kind)

    def _kill_replica(self, index: int, spec: FaultSpec) -> None:
        hostname = self._picked(spec)
        self._killed.add(hostname)
        hostname = self.stack.kill_replica(hostname)
        self._event(ev.FAULT_APPLIED, index, kind=spec.kind, hostname=hostname)
        self._event(ev.FAULT_ENDED, index, kind=spec.kind, hostname=hostname)

    def _delete_replica(self, index: int, spec: FaultSpec) -> None:
        # A backend without the verb was refused before the run (FAULT_NEEDS).
        hostname = self.stack.delete_replica(self._picked(spec))
        self._event(ev.FAULT_APPLIED, index, kind=spec.kind, hostname=hostname)
        self._event(ev.FAULT_ENDED, index, kind=spec.kind, hostname=hostname)

    def _pause_replica(self, index: int, spec: FaultSpec) -> None:
        hostname = self.stack.pause_replica(self._picked(spec))
        self._hold(index, spec, lambda: self.stack.resume_replica(hostname), hostname=hostname)

    def _pause_redis(self, index: int, spec: FaultSpec) -> None:
        self.stack.pause_store()
        self._hold(index, spec, self.stack.resume_store)

    def _restart_redis(self, index: int, spec: FaultSpec) -> None:
        self._event(ev.FAULT_APPLIED, index, kind=spec.kind, persist=spec.persist)
        details = self.stack.restart_store(spec.persist)
        self._event(ev.FAULT_ENDED, index, kind=spec.kind, **details)

    def _restart_balancer(self, index: int, spec: FaultSpec) -> None:
        # The balancer's stop is ours: no watcher may take it for a death.
        with self.events.expecting("balancer"), self.stack.lock:  # not during a rescale
            self._event(ev.FAULT_APPLIED, index, kind=spec.kind)
            self.stack.restart_balancer()
        self._event(ev.FAULT_ENDED, index, kind=spec.kind)

    def _latency(self, index: int, spec: FaultSpec) -> None:
        self.stack.disturb_store_link(latency_ms=spec.latency_ms)
        self._hold(index, spec, self.stack.heal_store_link, latency_ms=spec.latency_ms)

    def _reset(self, index: int, spec: FaultSpec) -> None:
        self.stack.disturb_store_link(reset=True)
        self._hold(index, spec, self.stack.heal_store_link)

    # -- helpers -------------------------------------------------------------------------

    def _picked(self, spec: FaultSpec) -> str | None:
        """The replica a fault hits: the one named, else the newest in service."""
        if spec.target:
            return spec.target
        replicas = [r for r in self.stack.replicas() if r.state == "up"]
        if not replicas:
            raise StackError("no replica is in service")
        return max(replicas, key=lambda r: (r.started or 0, r.hostname)).hostname

    def _safely(self, index: int, action: Callable[[], None]) -> None:
        try:
            action()
        except StackError as exc:
            log.error("scalecheck: undoing fault %d: %s", index, exc)

    def _event(self, name: str, index: int, **details) -> None:
        self.events.add(name, fault=index, **details)
