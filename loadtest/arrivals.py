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
import time
from collections.abc import Callable

import gevent
from gevent.queue import Channel, Full

from loadtest.plan import LoadProfile

log = logging.getLogger("scalecheck")
MAX_STEP = 0.01  # the rate is re-read at least every 10 ms along a ramp


class ArrivalSchedule:
    """Arrival times (seconds from the start) for ``share`` of the profile's rate.

    The first arrival is at 0; then one each time the integral of the rate
    reaches the next whole number.
    """

    def __init__(self, profile: LoadProfile, share: float = 1.0) -> None:
        self.profile = profile
        self.share = share
        self.t = 0.0
        self.acc = 1.0  # "one arrival owed" at t = 0

    def until(self, end: float) -> list[float]:
        out = []
        while self.t < end:
            rate = self.share * self.profile.value_at(self.t)
            step_end = min(end, self.t + MAX_STEP)
            if rate <= 0:
                self.t = step_end
                continue
            gap = max(0.0, (1.0 - self.acc) / rate)
            if self.t + gap <= step_end:
                self.t += gap
                self.acc = 0.0
                out.append(self.t)
            else:
                self.acc += rate * (step_end - self.t)
                self.t = step_end
        return out


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

    def next(self) -> float:
        """Block until the next arrival is due; return its intended start (epoch seconds)."""
        return self.channel.get()

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
