"""Knative's autoscaler (KPA), as pure functions.

Follows Knative Serving's ``pkg/autoscaler`` (``scaling/autoscaler.go``,
``aggregation/bucketing.go``, ``metrics/collector.go``; the panic window from
``reconciler/autoscaling/kpa/resources``): every second one service-wide value
(requests in flight, or requests/s) is recorded into per-second buckets;
every tick (2 s) the decider averages them over the stable window (default
60 s) and the panic window (10 % of it, rounded to a whole second with Go's
``Duration.Round``: halves away from zero, at least 1 s), and proposes
``ceil(average / target)`` pods for each, clamped to the scale-down and
scale-up rates relative to the *ready* count. "No data" only when nothing was
written for more than a stable window; an empty panic window averages 0. Panic
starts when the panic proposal reaches the threshold (200 %) of the ready
count, is extended by every tick still over it, and ends only once a whole
stable window has passed since the last such tick; in panic the count never
goes down.

``target`` is Knative's effective target per pod: the ``target`` annotation
(or the default: 100 in flight, 200 requests/s) times the target utilisation
(default 70 %), at least 0.01 (``ResolveMetricTarget``).

Not modelled: scale to zero, the activator and burst capacity, activation
scale, scale-down delay, pod sampling, weighted averaging.
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
        return panic_window(self.stable_window, self.panic_window_pct)


def panic_window(stable_window: float, percent: float) -> float:
    """Knative's panic window in seconds: ``time.Duration(float64(stable) * pct /
    100).Round(time.Second)``, at least one bucket (1 s). Go's ``Round`` takes
    halves away from zero, so 25 s at 10 % gives 3 s (Python's ``round``: 2 s)."""
    nanos = int(float(int(round(stable_window * 1e9))) * percent / 100.0)  # Go truncates
    whole, rest = divmod(nanos, 1_000_000_000)
    if rest + rest >= 1_000_000_000:
        whole += 1
    return float(max(1, whole))


@dataclass(frozen=True)
class KpaState:
    writes: tuple[tuple[int, float], ...] = ()  # (second, value), at most one per second
    stable_first: int | None = None  # first write of the stable window's buckets
    panic_first: int | None = None   # ... and of the panic window's (each resets alone)
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
    """Record the service-wide value observed in this second (the scraper's write).

    As ``TimedFloat64Buckets.Record``, each window's buckets remember their first
    write, forget it after a whole window without writes, and ignore a write a whole
    window older than the last one; a second written twice keeps the last value (the
    harness writes each second once)."""
    last = state.writes[-1][0] if state.writes else None
    if last is not None and second + knobs.stable_window <= last:
        return state

    def first(current: int | None, window: float) -> int | None:
        if current is None or last is None or second - last >= window:
            return second
        if second + window <= last:
            return current  # too old for this window's buckets
        return min(current, second)

    newest = second if last is None else max(second, last)
    writes = [w for w in state.writes if w[0] != second and w[0] > newest - knobs.stable_window]
    writes.append((second, value))
    writes.sort()
    return replace(state, writes=tuple(writes),
                   stable_first=first(state.stable_first, knobs.stable_window),
                   panic_first=first(state.panic_first, knobs.panic_window))


def window_average(writes: tuple[tuple[int, float], ...], now: float,
                   window: float, first: int | None = None) -> float | None:
    """Knative's ``TimedFloat64Buckets.WindowAverage``, with ``IsEmpty`` as None.

    Seconds between writes count as 0; a trailing gap of d seconds drops the d
    oldest buckets and shrinks the divisor by d; right after the first write the
    average is over the seconds there are. Nothing written for more than a window:
    None (no data); for exactly a window: 0. ``first``: the buckets' first write
    (inferred from ``writes`` when not given)."""
    if not writes:
        return None
    last = writes[-1][0]
    now_s = int(math.floor(now))
    gap = now_s - last
    if gap > window:
        return None
    if gap >= window:
        return 0.0
    if first is None:
        first = writes[0][0]
        for (previous, _), (second, _) in zip(writes, writes[1:]):
            if second - previous >= window:
                first = second  # a write after a whole window of silence starts afresh
    buckets = int(math.ceil(window))
    gap = max(0, gap)  # a clock behind the last write reads the whole ring
    lo = max(first, max(now_s, last) - buckets + 1)
    total = sum(v for s, v in writes if lo <= s <= last)
    count = min(last - first + 1, buckets - gap)
    return round(total / count, 6)


def kpa_step(state: KpaState, now: float, ready: int, knobs: KpaKnobs,
             data_now: float | None = None) -> tuple[KpaState, KpaDecision]:
    """One tick of the decider at ``now``. ``data_now`` is the time the freshest recorded
    second stands for (Knative's scraper writes at the tick's own time; records reach us a
    second or two late, so the windows are read as of the last complete second)."""
    data_now = now if data_now is None else data_now
    stable = window_average(state.writes, data_now, knobs.stable_window, state.stable_first)
    panic = window_average(state.writes, data_now, knobs.panic_window, state.panic_first)
    return kpa_decide(state, now, ready, stable, panic, knobs)


def kpa_decide(state: KpaState, now: float, ready: int, stable: float | None,
               panic: float | None, knobs: KpaKnobs) -> tuple[KpaState, KpaDecision]:
    """``autoscaler.Scale`` given the two window averages (stable None: no data)."""
    decision = KpaDecision(now, ready)
    if not state.started:
        # A fresh autoscaler holds what is ready; with more than one pod, it starts in panic.
        state = replace(state, started=True, max_panic_pods=ready,
                        panic_time=now if ready > 1 else None)
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
