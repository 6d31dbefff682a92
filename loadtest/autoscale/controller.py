"""The autoscaler in the run: samples metrics every second, decides on its period.

The conductor calls ``maybe_decide(t, current)`` on every tick; this samples
the stack once a second and, on the policy's period (HPA: the sync period;
KPA: its 2 s tick), runs the pure policy and records an
``autoscale_decision`` event with every intermediate value. The conductor
then rescales when the decision differs from the count asked for last.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

from loadtest.autoscale.hpa import HpaState, Observation, hpa_step, knobs_for
from loadtest.autoscale.kpa import KpaKnobs, KpaState, kpa_record, kpa_step
from loadtest.autoscale.metrics import CPU_SOURCE, MetricSource, RecordTap
from loadtest.contract import events as ev
from loadtest.contract.plan import AutoscaleSettings
from loadtest.stack import Stack

log = logging.getLogger("scalecheck")
KPA_TICK = 2.0


class Autoscaler:
    def __init__(self, settings: AutoscaleSettings, stack: Stack, collector,
                 events: list[dict]) -> None:
        self.settings = settings
        self.stack = stack
        self.events = events
        self.tap = RecordTap(horizon=max(120.0, settings.period * 2, settings.stable_window * 2))
        collector.taps.append(self.tap.feed)
        self.source = MetricSource(settings.metric, stack, self.tap,
                                   cpu_request=settings.cpu_request)
        self.period = KPA_TICK if settings.policy == "kpa" else settings.period
        self._next_sample = 0.0
        self._next_decision = self.period
        self._last_second: int | None = None
        if settings.policy == "hpa":
            self.knobs = knobs_for(settings)
            self.state = HpaState()
        else:
            self.knobs = KpaKnobs(target=settings.target, min_replicas=settings.min_replicas,
                                  max_replicas=settings.max_replicas,
                                  stable_window=settings.stable_window,
                                  panic_threshold=settings.panic_threshold)
            self.state = KpaState()

    def maybe_decide(self, t: float, current: int) -> int | None:
        now = time.time()
        if t >= self._next_sample:
            self._next_sample = math.floor(t) + 1.0
            self.source.sample(now)
            if self.settings.policy == "kpa":
                self._record_kpa_second(now)
        if t < self._next_decision:
            return None
        self._next_decision += self.period
        if self.settings.policy == "hpa":
            return self._decide_hpa(now, current)
        return self._decide_kpa(now, current)

    # -- HPA -----------------------------------------------------------------------------

    def _decide_hpa(self, now: float, current: int) -> int | None:
        since = self.stack.replica_since()
        if self.settings.metric == "cpu":
            # The Resource metric: each replica as a pod, with its start and ready times.
            started = {r.hostname: r.started for r in self.stack.replicas()}
            pods = self.source.cpu_pods(now - self.period, now, since, started, current)
            obs = Observation(now=now, current=current, pods=pods)
            self.state, decision = hpa_step(self.state, obs, self.knobs)
            self._event(decision, CPU_SOURCE, ready=len(since),
                        missing=len(decision.missing_pods),
                        pending=sum(p.phase == "Pending" for p in pods))
            return decision.final
        values, missing, source = self.source.per_replica(now - self.period, now, since)
        obs = Observation(now=now, current=current, samples=values, missing=missing,
                          pending=max(0, current - len(since)))
        self.state, decision = hpa_step(self.state, obs, self.knobs)
        self._event(decision, source, ready=len(since), missing=missing, pending=obs.pending)
        return decision.final

    # -- KPA -----------------------------------------------------------------------------

    def _record_kpa_second(self, now: float) -> None:
        second = int(now) - 1  # the last whole second: its records are (mostly) in
        if self._last_second is not None and second <= self._last_second:
            return
        self._last_second = second
        value = self.source.service_value(second)
        self.state = kpa_record(self.state, second, value, self.knobs)

    def _decide_kpa(self, now: float, current: int) -> int | None:
        ready = len(self.stack.replica_since())
        data_now = None if self._last_second is None else float(self._last_second)
        self.state, decision = kpa_step(self.state, now, ready, self.knobs, data_now)
        source = ("records (requests/s, all replicas)" if self.settings.metric == "rps"
                  else "records (requests in flight, all replicas, by Little's law)")
        self._event(decision, source, current=current)
        return decision.final

    def _event(self, decision, source: str, **extra) -> None:
        details = {k: v for k, v in asdict(decision).items() if k != "now"}
        self.events.add(ev.AUTOSCALE_DECISION, decision.now, policy=self.settings.policy,
                        metric=self.settings.metric, target=self.settings.target,
                        source=source, **details, **extra)
        log.info("scalecheck: autoscaler (%s on %s): %s -> %s %s", self.settings.policy,
                 self.settings.metric, extra.get("current", decision.__dict__.get("current")),
                 decision.final, "; ".join(decision.reasons))
