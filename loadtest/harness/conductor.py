"""The conductor: applies the run plan to the stack while the test runs.

It owns the stack for the run's life (on the master, or a local runner):
brings it up, starts each stage of fixed levels, lets the autoscaler decide
on its period, injects the faults on schedule, watches the stack (a replica,
the balancer or Redis that stops on its own), and takes everything down at
the end. Every change of the replica count goes through ``rescale``, one at
a time; every change is an event in the run's record.

The shape only asks the plan for the load; the conductor does the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import gevent.lock

from loadtest.contract import events as ev
from loadtest.contract.plan import RunPlan, Stage
from loadtest.contract.rundir import RunRecord
from loadtest.stack import Stack, StackError

log = logging.getLogger("scalecheck")
PLAN_TICK = 0.1
#: Of a stage, what the analysis judges with the scale changes around it, not as steady.
STEADY_OVERHEAD_S = ev.TRANSITION_MARGIN_S + ev.TRANSITION_LEAD_S
POLL_EVERY = 0.25


class Conductor:
    def __init__(self, stack: Stack, plan: RunPlan, record: RunRecord,
                 announce: Callable[[int, int], None],
                 on_fatal: Callable[[str], None],
                 replace_dead: bool = False,
                 users_now: Callable[[], int | None] = lambda: None) -> None:
        self.stack = stack
        self.plan = plan
        self.record = record
        self.announce = announce          # (stage index, level) -> records and workers
        self.on_fatal = on_fatal          # the run cannot go on
        self.replace_dead = replace_dead
        self.users_now = users_now
        self.t0: float | None = None
        self.held = 0.0                   # seconds the plan's clock stood still (min_steady)
        self.level = plan.first_level     # the replica count asked for last
        self.stage: Stage | None = None
        self.stage_record: dict | None = None
        self.autoscaler = None            # set by the harness when the plan has one
        self.faults = None                # set by the harness when the plan has faults
        self._scale_lock = gevent.lock.RLock()
        self._greenlets: list[gevent.Greenlet] = []
        self._rescales: list[gevent.Greenlet] = []
        self._stopped = False

    # -- life ----------------------------------------------------------------------

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._stopped = False
        self._greenlets = [gevent.spawn(self._plan_loop), gevent.spawn(self._watch_loop)]

    def elapsed(self) -> float:
        """The plan's time: seconds since the start, less the time it was held."""
        return 0.0 if self.t0 is None else time.time() - self.t0 - self.held

    def stop(self) -> None:
        """Stop deciding; end faults in progress (a frozen Redis must wake up) and
        let a rescale in progress finish."""
        self._stopped = True
        for greenlet in self._greenlets:
            greenlet.kill(block=True)
        self._greenlets = []
        if self.faults is not None:
            self.faults.end_all()
        for greenlet in self._rescales:
            greenlet.join(timeout=60)
        self.record.set_events(self.stack.events)

    # -- the plan, on time ----------------------------------------------------------

    def _plan_loop(self) -> None:
        while not self._stopped:
            t = self.plan_time()
            stage = self.plan.stage_at(t)
            if self.stage is None or stage.index != self.stage.index:
                self._begin_stage(stage)
            if self.autoscaler is not None:
                desired = self.autoscaler.maybe_decide(t, self.level)
                if desired is not None and desired != self.level:
                    if getattr(self.autoscaler, "observes_only", False):
                        self.follow(desired)  # the cluster's own autoscaler scales
                    else:
                        self.rescale(desired, by="autoscaler")
            if self.faults is not None:
                self.faults.apply_due(t)
            gevent.sleep(PLAN_TICK)

    def plan_time(self) -> float:
        """Where the plan is now (what the shape and the schedule ask about)."""
        return self._hold(self.elapsed())

    def _hold(self, t: float) -> float:
        """``min_steady``: a stage does not end before its replicas have served steadily for
        that long, as the analysis counts steady: after the change's margin past 'ready', and
        before the lead of the next change (those seconds are judged with the changes).
        Until then the plan's clock stands still at the stage's end (the later stages, the
        load and the end of the run move back by as much). What a slow rescale costs is then
        time, not a level that was never judged."""
        stage, record = self.stage, self.stage_record
        need = self.plan.min_steady
        if not need or stage is None or record is None or t < stage.t_end or \
                stage.index == len(self.plan.stages) - 1 and t < self.plan.duration:
            return t
        ready = record.get("t_ready")
        if ready is not None and time.time() >= ready + STEADY_OVERHEAD_S + need:
            return t
        self.held += t - (stage.t_end - 1e-6)  # stand still just before the stage's end
        return stage.t_end - 1e-6

    def _begin_stage(self, stage: Stage) -> None:
        self.stage = stage
        level = stage.level if self.plan.autoscale is None else self.level
        self.stage_record = self.record.begin_stage(stage.index, level, self.users_now())
        self.announce(stage.index, level)
        if not self.stack.controlled:
            self.record.stage_ready(self.stage_record, self.stage_record["t_start"],
                                    self.stage_record["t_start"])
        elif self.plan.autoscale is None and not (stage.index == 0 and
                                                   stage.level == self.level):
            self.rescale(stage.level, by="plan", stage_record=self.stage_record)
        else:  # the autoscaler owns the count, or the stack came up at this level
            now = time.time()
            self.record.stage_ready(self.stage_record, now, now)

    def follow(self, level: int) -> None:
        """The replica count changed by another's hand (the cluster's autoscaler): the
        records carry it from now; nothing is asked of the stack."""
        self.level = level
        if self.stage is not None:
            self.announce(self.stage.index, level)
        self.record.set_events(self.stack.events)

    def rescale(self, level: int, by: str, stage_record: dict | None = None) -> None:
        """Change the replica count in the background; changes apply one at a time."""
        self.level = level
        if self.stage is not None:
            self.announce(self.stage.index, level)
        greenlet = gevent.spawn(self._rescale, level, by, stage_record)
        self._rescales = [g for g in self._rescales if not g.dead] + [greenlet]

    def _rescale(self, level: int, by: str, stage_record: dict | None) -> None:
        with self._scale_lock:
            if level != self.level and by != "plan":
                return  # a newer decision replaced this one while it waited
            try:
                result = self.stack.scale(level, by=by)
                if stage_record is not None:
                    self.record.stage_ready(stage_record, result.asked, result.ready)
            except StackError as exc:
                message = f"rescale to {level} failed: {exc}"
                log.error("scalecheck: %s", message)
                if stage_record is not None:
                    self.record.stage_failed(stage_record, message)
                self.on_fatal(message)
            finally:
                self.record.set_events(self.stack.events)
                self.record.save()

    # -- watching the stack -------------------------------------------------------------

    def _watch_loop(self) -> None:
        while not self._stopped:
            try:
                noticed = self.stack.poll()
            except StackError as exc:
                log.warning("scalecheck: watching the stack: %s", exc)
                noticed = []
            for event in noticed:
                self._on_stack_event(event)
            if noticed:
                self.record.set_events(self.stack.events)
                self.record.save()
            gevent.sleep(POLL_EVERY)

    def _on_stack_event(self, event: dict) -> None:
        kind = event["event"]
        if kind == ev.REPLICA_DIED:
            planned = self.faults is not None and self.faults.expects_death(event["hostname"])
            log.warning("scalecheck: replica %s died%s", event["hostname"],
                        " (the fault schedule killed it)" if planned else "")
            if self.replace_dead:
                self.rescale(self.level, by="replace-dead")
        elif kind == ev.BALANCER_DIED:
            if self.stack.events.expected("balancer", event["t"]):
                return
            self.on_fatal(f"the balancer ({event.get('balancer')}) exited "
                          f"(code {event.get('returncode')}); the run cannot go on")
        elif kind == ev.STORE_DIED:
            log.error("scalecheck: Redis stopped (code %s); the app's counter is gone",
                      event.get("returncode"))
