"""The open model: requests arrive at a rate, whatever the app's speed.

Locust's users are a closed model: each sends its next request only when the
last one returned, so a slow app lowers the offered load and hides the very
overload an autoscaler should react to. Here, as in wrk2 and k6's
arrival-rate executors, arrivals are scheduled in advance; a free user takes
each one at its intended time. If no user is free, the arrival is *dropped*
and counted (k6's ``dropped_iterations``); each record keeps its intended
start, so latency can be measured from it (coordinated-omission free).

``ArrivalSchedule`` is pure (times from a rate); ``ArrivalDispatcher`` hands
them to users in one Locust process, at that process's share of the rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import gevent
from gevent.queue import Channel, Empty, Full

from loadtest.contract.plan import LoadProfile

log = logging.getLogger("scalecheck")


class ArrivalSchedule:
    """Arrival times (seconds from the start) for ``share`` of the profile's rate.

    Arrival k (k = 0, 1, ...) is due when the integral of the rate reaches k: the
    profile is piecewise linear, so each time is solved exactly (no drift however long
    the run), and a ramp's arrivals speed up smoothly.
    """

    def __init__(self, profile: LoadProfile, share: float = 1.0) -> None:
        self.profile = profile
        self.share = share
        self.k = 0          # the next arrival's number
        self.seg = 0        # the profile segment we are in
        self.seg_start_n = 0.0  # arrivals due before this segment's start

    def _segment(self, i: int) -> tuple[float, float, float, float]:
        """(t0, v0, t1, v1) of segment i; past the last point the rate stays flat."""
        pts = self.profile.points
        if i < len(pts) - 1:
            (t0, v0), (t1, v1) = pts[i], pts[i + 1]
            return t0, v0 * self.share, t1, v1 * self.share
        t0, v0 = pts[-1]
        return t0, v0 * self.share, math.inf, v0 * self.share

    def until(self, end: float) -> list[float]:
        out = []
        while True:
            t0, v0, t1, v1 = self._segment(self.seg)
            need = self.k - self.seg_start_n  # arrivals into this segment
            span = t1 - t0
            slope = 0.0 if span in (0, math.inf) else (v1 - v0) / span
            if abs(slope) < 1e-12:
                dt = need / v0 if v0 > 0 else math.inf
            else:
                disc = v0 * v0 + 2 * slope * need
                dt = (-v0 + math.sqrt(disc)) / slope if disc >= 0 else math.inf
            at = t0 + dt
            if at <= t1 and at < end:
                out.append(at)
                self.k += 1
                continue
            if at <= t1 or t1 >= end:
                return out  # the next one is due at or after ``end``: later
            # move to the next segment: what this one delivers in all
            self.seg_start_n += v0 * span + slope * span * span / 2
            self.seg += 1


class ArrivalDispatcher:
    """Hands each arrival to a user waiting for one, at its time; counts those none took."""

    def __init__(self, schedule: ArrivalSchedule, t0: float,
                 on_dropped: Callable[[float], None], tick: float = 0.005) -> None:
        self.schedule = schedule
        self.t0 = t0
        self.on_dropped = on_dropped
        self.tick = tick
        self.channel: Channel = Channel()
        self.sent = 0
        self.dropped = 0
        self._greenlet = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
            # Arrivals already due that the dispatcher could not hand out (it fell behind,
            # the generator being at its limit) were offered and never sent: dropped.
            now = time.time()
            for at in self.schedule.until(now - self.t0):
                self.dropped += 1
                self.on_dropped(self.t0 + at)
        while self.channel.getters:  # release the users waiting for an arrival
            self.channel.put(None)

    def next(self, timeout: float = 0.5) -> float | None:
        """Block until the next arrival is due and return its intended start (epoch
        seconds); None if none came within ``timeout`` (so a stopping user can stop)."""
        try:
            return self.channel.get(timeout=timeout)
        except Empty:
            return None

    def _run(self) -> None:
        while True:
            now = time.time() - self.t0
            for at in self.schedule.until(now + self.tick):
                wait = at - (time.time() - self.t0)
                if wait > 0.001:
                    gevent.sleep(wait)
                intended = self.t0 + at
                try:
                    self.channel.put(intended, block=False)
                    self.sent += 1
                except Full:
                    self.dropped += 1
                    self.on_dropped(intended)
            gevent.sleep(self.tick)
