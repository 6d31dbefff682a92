"""Kubernetes' Horizontal Pod Autoscaler, as a pure function.

``hpa_step(state, observation, knobs)`` returns the next state and a
``HpaDecision`` with every intermediate value. The rules follow the
controller's source (``pkg/controller/podautoscaler``: ``horizontal.go`` and
``replica_calculator.go``), in this order:

1. **Replica calculator** (Pods metric, AverageValue target): the average over
   replicas that reported a sample, in integer milli-units; the ratio to the
   target; inside the tolerance band (inclusive) nothing changes, else
   ``ceil(ratio × replicas with a sample)``. Replicas with no sample are
   filled in (the target on a scale-down, 0 on a scale-up), pending ones count
   as 0 on a scale-up, and the tolerance and direction are checked again.
2. **Stabilisation**: the current count is raised to the smallest
   recommendation of the scale-up window and lowered to the largest of the
   scale-down window (default 300 s); windows are strict (``t > now − W``).
3. **Behavior policies**: limits from the replica count at the start of each
   policy's period (default: up by max(4 pods, 100 %) per 15 s, down by 100 %
   per 15 s; selectPolicy Max), then min/max replicas.

Not modelled: scale to zero, Object/External metrics, several HPAs on one
workload; with ``legacy=True`` the path of an HPA without a ``behavior``
block (300 s inclusive window, up to max(2×, 4), no scale-down limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Policy:
    kind: str      # "Pods" or "Percent"
    value: float
    period: float  # seconds


@dataclass(frozen=True)
class HpaKnobs:
    target: float                  # per replica, in the metric's unit
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    tolerance_up: float | None = None    # behavior.scaleUp.tolerance
    tolerance_down: float | None = None  # behavior.scaleDown.tolerance
    scale_up_window: float = 0.0
    scale_down_window: float = 300.0
    up_policies: tuple[Policy, ...] = (Policy("Pods", 4, 15), Policy("Percent", 100, 15))
    down_policies: tuple[Policy, ...] = (Policy("Percent", 100, 15),)
    select_up: str = "Max"         # Max | Min | Disabled
    select_down: str = "Max"
    legacy: bool = False           # an HPA without a behavior block
    cpu: bool = False              # the CPU metric: pending replicas count as unready


@dataclass(frozen=True)
class HpaState:
    recommendations: tuple[tuple[float, int], ...] = ()  # (t, raw desired)
    up_events: tuple[tuple[float, int], ...] = ()         # (t, replicas added)
    down_events: tuple[tuple[float, int], ...] = ()       # (t, replicas removed)
    started: bool = False


@dataclass(frozen=True)
class Observation:
    now: float
    current: int                         # spec.replicas: the count asked for last
    samples: dict[str, float]            # replica -> metric value (replicas with a sample)
    missing: int = 0                     # replicas in service with no sample
    pending: int = 0                     # replicas asked for that are not in service yet


@dataclass
class HpaDecision:
    now: float
    current: int
    metric_per_replica: dict[str, float]
    average: float | None = None
    ratio: float | None = None
    raw: int | None = None               # the replica calculator's proposal
    within_tolerance: bool | None = None
    after_tolerance: int | None = None   # raw, or current inside the band
    stabilized: int | None = None
    after_policies: int | None = None
    final: int | None = None
    reasons: list[str] = field(default_factory=list)


def _milli(value: float) -> int:
    return int(round(value * 1000))


def _within(ratio: float, knobs: HpaKnobs) -> bool:
    up = knobs.tolerance if knobs.tolerance_up is None else knobs.tolerance_up
    down = knobs.tolerance if knobs.tolerance_down is None else knobs.tolerance_down
    return (1 - down) <= ratio <= (1 + up)


def replica_calculator(obs: Observation, knobs: HpaKnobs) -> tuple[int, float, float, bool, str]:
    """(proposal, average, ratio, within tolerance, reason) for a Pods AverageValue metric."""
    values = [_milli(v) for v in obs.samples.values()]
    if not values:
        return obs.current, 0.0, 0.0, True, "no metric samples: no change"
    target = _milli(knobs.target)
    usage = int(sum(values) / len(values))  # integer division, as the controller
    ratio = usage / target
    scale_up_with_unready = obs.pending > 0 and ratio > 1
    if obs.missing == 0 and not scale_up_with_unready:
        if _within(ratio, knobs):
            return obs.current, usage / 1000, ratio, True, "within tolerance"
        return math.ceil(ratio * len(values)), usage / 1000, ratio, False, "replica calculator"
    filled = list(values)
    if ratio < 1:
        filled += [target] * obs.missing      # missing: as if exactly at target
    else:
        filled += [0] * obs.missing           # missing: as if idle
        if scale_up_with_unready:
            filled += [0] * obs.pending       # pending replicas: idle
    new_ratio = int(sum(filled) / len(filled)) / target
    if _within(new_ratio, knobs) or (ratio < 1 < new_ratio) or (ratio > 1 > new_ratio):
        return obs.current, usage / 1000, ratio, True, \
            "within tolerance once missing/pending replicas are filled in"
    proposal = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1 and proposal > obs.current) or (new_ratio > 1 and proposal < obs.current):
        return obs.current, usage / 1000, ratio, False, "direction would flip: no change"
    return proposal, usage / 1000, ratio, False, "replica calculator (missing/pending filled in)"


def hpa_step(state: HpaState, obs: Observation, knobs: HpaKnobs) -> tuple[HpaState, HpaDecision]:
    now, current = obs.now, obs.current
    decision = HpaDecision(now, current, dict(obs.samples))
    if not state.started:
        # The controller stores the current count as its first recommendation.
        state = replace(state, started=True, recommendations=((now, current),))
    if current > knobs.max_replicas or current < knobs.min_replicas:
        final = min(max(current, knobs.min_replicas), knobs.max_replicas)
        decision.final = final
        decision.reasons.append("current count outside [min, max]: clamped, nothing else")
        return _record(state, now, current, final, knobs, store_rec=None), decision

    if not obs.samples:
        # The controller fails this sync ("failed to get ... metric"): no scale, and no
        # recommendation stored that would hold a later scale-down back.
        decision.reasons.append("no metric samples: no change, nothing recorded")
        return _record(state, now, current, current, knobs, store_rec=None), decision

    raw, average, ratio, within, reason = replica_calculator(obs, knobs)
    decision.average, decision.ratio, decision.raw = average, ratio, raw
    decision.within_tolerance = within
    decision.after_tolerance = raw
    decision.reasons.append(reason)

    if knobs.legacy:
        window = [r for t, r in state.recommendations if not t < now - knobs.scale_down_window]
        stabilized = max([raw, *window])
        decision.stabilized = stabilized
        limit = int(max(2 * current, 4))
        allowed = min(knobs.max_replicas, limit)
        final = knobs.min_replicas if stabilized < knobs.min_replicas else min(stabilized, allowed)
        decision.after_policies = final
        decision.final = final
        if stabilized != raw:
            decision.reasons.append("scale-down stabilised (legacy window)")
        if final != stabilized:
            decision.reasons.append("limited (legacy rule: up to max(2×, 4); min/max)")
        return _record(state, now, current, final, knobs, store_rec=raw, events=False), decision

    up_rec = min([raw, *[r for t, r in state.recommendations if t > now - knobs.scale_up_window]])
    down_rec = max([raw, *[r for t, r in state.recommendations
                           if t > now - knobs.scale_down_window]])
    stabilized = min(max(current, up_rec), down_rec)
    decision.stabilized = stabilized
    if stabilized != raw:
        decision.reasons.append("scale-up stabilised" if raw >= current
                                else "scale-down stabilised")
    final = _apply_policies(state, now, current, stabilized, knobs)
    decision.after_policies = final
    decision.final = final
    if final != stabilized:
        decision.reasons.append("scaling limited (behavior policies, min/max replicas)")
    return _record(state, now, current, final, knobs, store_rec=raw), decision


def _apply_policies(state: HpaState, now: float, current: int, desired: int,
                    knobs: HpaKnobs) -> int:
    if desired > current:
        proposals = []
        for policy in knobs.up_policies:
            start = _period_start(state, now, current, policy.period)
            if policy.kind == "Pods":
                proposals.append(start + policy.value)
            else:
                proposals.append(math.ceil(start * (1 + policy.value / 100)))
        limit = _select(knobs.select_up, proposals, current, up=True)
        limit = max(limit, current)
        return int(min(desired, min(knobs.max_replicas, limit)))
    if desired < current:
        proposals = []
        for policy in knobs.down_policies:
            start = _period_start(state, now, current, policy.period)
            if policy.kind == "Pods":
                proposals.append(start - policy.value)
            else:
                proposals.append(int(start * (1 - policy.value / 100)))  # truncates
        limit = _select(knobs.select_down, proposals, current, up=False)
        limit = min(limit, current)
        return int(max(desired, max(knobs.min_replicas, limit)))
    return current


def _select(how: str, proposals: list[float], current: int, up: bool) -> float:
    if how == "Disabled" or not proposals:
        return current
    if how == "Min":
        return min(proposals) if up else max(proposals)
    return max(proposals) if up else min(proposals)  # Max: the most change


def _period_start(state: HpaState, now: float, current: int, period: float) -> int:
    added = sum(n for t, n in state.up_events if t > now - period)
    removed = sum(n for t, n in state.down_events if t > now - period)
    return current - added + removed


def _record(state: HpaState, now: float, current: int, final: int, knobs: HpaKnobs,
            store_rec: int | None, events: bool = True) -> HpaState:
    horizon = max(knobs.scale_down_window, knobs.scale_up_window,
                  *(p.period for p in knobs.up_policies + knobs.down_policies)) + 1
    recs = tuple((t, r) for t, r in state.recommendations if t > now - horizon)
    if store_rec is not None:
        recs += ((now, store_rec),)
    ups = tuple(e for e in state.up_events if e[0] > now - horizon)
    downs = tuple(e for e in state.down_events if e[0] > now - horizon)
    if events and final > current:
        ups += ((now, final - current),)
    elif events and final < current:
        downs += ((now, current - final),)
    return replace(state, recommendations=recs, up_events=ups, down_events=downs)
