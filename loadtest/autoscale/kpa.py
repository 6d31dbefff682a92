"""Knative's autoscaler (KPA), as pure functions.

Follows Knative Serving's ``pkg/autoscaler``: every second one service-wide
value (requests in flight, or requests/s) is recorded into per-second
buckets; every tick (2 s) the decider averages them over the stable window
(default 60 s) and the panic window (10 % of it), and proposes
``ceil(average / target)`` pods for each, clamped to the scale-down and
scale-up rates relative to the *ready* count. Panic starts when the panic
proposal reaches the threshold (200 %) of the ready count, is extended by
every tick still over it, and ends only once a whole stable window has
passed since the last such tick; in panic the count never goes down.

Not modelled: scale to zero, the activator, pod sampling, weighted averaging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class KpaKnobs:
    target: float                 # per pod (Knative: 70 concurrency or 140 rps by default)
    min_replicas: int = 1
    max_replicas: int = 0         # 0: unbounded
    stable_window: float = 60.0
    panic_window_pct: float = 10.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    tick: float = 2.0

    @property
    def panic_window(self) -> float:
        return max(1.0, round(self.stable_window * self.panic_window_pct / 100))


@dataclass(frozen=True)
class KpaState:
    writes: tuple[tuple[int, float], ...] = ()  # (second, value), at most one per second
    panic_time: float | None = None
    max_panic_pods: int = 0
    started: bool = False


@dataclass
class KpaDecision:
    now: float
    ready: int
    stable_average: float | None = None
    panic_average: float | None = None
    desired_stable: int | None = None
    desired_panic: int | None = None
    max_down: int | None = None
    max_up: int | None = None
    panicking: bool = False
    raw: int | None = None
    final: int | None = None
    reasons: list[str] = field(default_factory=list)


def kpa_record(state: KpaState, second: int, value: float, knobs: KpaKnobs) -> KpaState:
    """Record the service-wide value observed in this second (the scraper's write)."""
    writes = [w for w in state.writes if w[0] != second and w[0] > second - knobs.stable_window]
    writes.append((second, value))
    writes.sort()
    return replace(state, writes=tuple(writes))


def window_average(writes: tuple[tuple[int, float], ...], now: float,
                   window: float) -> float | None:
    """Knative's TimedFloat64Buckets.WindowAverage: seconds between writes count as 0, a
    trailing gap shrinks the divisor, a partial window right after the first write is
    averaged over what there is; no write within the window: None (no data)."""
    if not writes:
        return None
    last = writes[-1][0]
    now_s = int(math.floor(now))
    if now_s - last >= window:
        return None
    first = writes[0][0]
    for (previous, _), (second, _) in zip(writes, writes[1:]):
        if second - previous >= window:
            first = second  # a write after a whole window of silence starts afresh
    # The buckets still in the window as of now; a trailing gap of d seconds both drops
    # the d oldest buckets and shrinks the divisor by d (Knative's ring of buckets).
    gap = max(0, now_s - last)
    lo = max(first, now_s - int(window) + 1)
    total = sum(v for s, v in writes if lo <= s <= last)
    count = min(last - first + 1, int(window) - gap)
    return round(total / count, 6)


def kpa_step(state: KpaState, now: float, ready: int, knobs: KpaKnobs,
             data_now: float | None = None) -> tuple[KpaState, KpaDecision]:
    """One tick of the decider at ``now``. ``data_now`` is the time the freshest recorded
    second stands for (Knative's scraper writes at the tick's own time; records reach us a
    second or two late, so the windows are read as of the last complete second)."""
    decision = KpaDecision(now, ready)
    data_now = now if data_now is None else data_now
    if not state.started:
        # A fresh autoscaler holds what is ready; with more than one pod, it starts in panic.
        state = replace(state, started=True, max_panic_pods=ready,
                        panic_time=now if ready > 1 else None)
    stable = window_average(state.writes, data_now, knobs.stable_window)
    panic = window_average(state.writes, data_now, knobs.panic_window)
    if stable is not None and panic is None:
        panic = 0.0  # Knative: no data only when the stable window is empty; else 0
    decision.stable_average, decision.panic_average = stable, panic
    if stable is None:
        decision.final = None
        decision.reasons.append("no data in the window: no change")
        return state, decision
    r = max(1, ready)
    max_up = math.ceil(knobs.max_scale_up_rate * r)
    max_down = math.floor(r / knobs.max_scale_down_rate)
    dspc = math.ceil(stable / knobs.target)
    dppc = math.ceil(panic / knobs.target)
    desired_stable = min(max(dspc, max_down), max_up)
    desired_panic = min(max(dppc, max_down), max_up)
    decision.desired_stable, decision.desired_panic = desired_stable, desired_panic
    decision.max_down, decision.max_up = max_down, max_up
    over = dppc / r >= knobs.panic_threshold
    panic_time, max_panic = state.panic_time, state.max_panic_pods
    if over:
        if panic_time is None:
            decision.reasons.append("panic: the panic window wants "
                                    f"{dppc / r:.0%} of the ready pods")
        panic_time = now
    elif panic_time is not None and panic_time + knobs.stable_window < now:
        panic_time, max_panic = None, 0
        decision.reasons.append("panic over: a stable window without reason to panic")
    if panic_time is not None:
        d = max(desired_stable, desired_panic)
        max_panic = max(max_panic, d)
        d = max_panic
        decision.panicking = True
    else:
        d = desired_stable
    decision.raw = d
    final = max(d, knobs.min_replicas)
    if knobs.max_replicas and final > knobs.max_replicas:
        final = knobs.max_replicas
    decision.final = final
    if final != d:
        decision.reasons.append("bounded by min/max replicas")
    return replace(state, panic_time=panic_time, max_panic_pods=max_panic), decision
