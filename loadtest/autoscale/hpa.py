"""Kubernetes' Horizontal Pod Autoscaler, as a pure function.

``hpa_step(state, observation, knobs)`` returns the next state and a
``HpaDecision`` with every intermediate value. The rules follow the
controller's source (``pkg/controller/podautoscaler``: ``horizontal.go`` and
``replica_calculator.go``), in this order:

1. **Grouping** (``groupPods``): each replica is a pod. Deleted or failed
   pods are *ignored*; pending pods are *unready*; running pods without a
   sample are *missing*. For the CPU metric only, a running pod is also
   *unready* when it has no Ready condition or start time, when it is still in
   its CPU initialisation period (``cpu_initialization_period``, 5 min) and
   either not ready or its sample's window began before it became ready, or,
   after that period, when it is not ready and never was (it went unready
   within ``delay_of_initial_readiness_status``, 30 s, of starting).
2. **Replica calculator** over the ready pods' samples, in integer
   milli-units. CPU (``GetResourceReplicas``): utilisation = total usage × 100
   ÷ total request, truncated to a whole percent (a target of 60 means 60 %);
   other metrics (``calcPlainMetricReplicas``): the average. Inside the
   tolerance band (inclusive) nothing changes, else ``ceil(ratio × ready
   pods)``. With missing pods, or unready ones on a scale-up, the ratio is
   computed again with missing pods at the target (CPU: ``max(100 %, target)``
   of their request) on a scale-down and at 0 on a scale-up, unready pods at 0
   on a scale-up; a ratio exactly on target fills nothing (kubernetes#117845).
   If that lands in the band or flips the direction: no change.
3. **Stabilisation**: the current count is raised to the smallest
   recommendation of the scale-up window and lowered to the largest of the
   scale-down window (default 300 s); windows are strict (``t > now − W``).
4. **Behavior policies**: limits from the replica count at the start of each
   policy's period (default: up by max(4 pods, 100 %) per 15 s, down by 100 %
   per 15 s; selectPolicy Max), then min/max replicas.

Not modelled: scale to zero, Object/External metrics, several metrics or HPAs
on one workload, per-container requests; with ``legacy=True`` the path of an
HPA without a ``behavior`` block (300 s inclusive window, up to max(2×, 4), no
scale-down limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from loadtest.contract.plan import DEFAULT_DOWN, DEFAULT_UP, AutoscaleSettings, Policy

#: A time long before any run: "started, and ready, long ago" (Kubernetes' zero time).
LONG_AGO = -1e9


@dataclass(frozen=True)
class HpaKnobs:
    target: float                  # per replica, in the metric's unit (cpu: % of the request)
    min_replicas: int = 1
    max_replicas: int = 10
    tolerance: float = 0.1
    tolerance_up: float | None = None    # behavior.scaleUp.tolerance
    tolerance_down: float | None = None  # behavior.scaleDown.tolerance
    scale_up_window: float = 0.0
    scale_down_window: float = 300.0
    up_policies: tuple[Policy, ...] = DEFAULT_UP
    down_policies: tuple[Policy, ...] = DEFAULT_DOWN
    select_up: str = "Max"         # Max | Min | Disabled
    select_down: str = "Max"
    legacy: bool = False           # an HPA without a behavior block
    cpu: bool = False              # the Resource (CPU utilisation) metric, not a Pods metric
    cpu_initialization_period: float = 300.0       # --horizontal-pod-autoscaler-cpu-...
    delay_of_initial_readiness_status: float = 30.0  # --horizontal-pod-autoscaler-initial-...


def knobs_for(settings: AutoscaleSettings) -> HpaKnobs:
    """The knobs of the run plan's HPA: the flat settings plus its ``behavior``, built the
    same way whether they came from the flags or from ``--hpa-manifest``."""
    behavior = {f.name: getattr(settings.behavior, f.name) for f in fields(settings.behavior)}
    return HpaKnobs(target=settings.target, min_replicas=settings.min_replicas,
                    max_replicas=settings.max_replicas, tolerance=settings.tolerance,
                    scale_down_window=settings.scale_down_window,
                    cpu=settings.metric == "cpu", **behavior)


@dataclass(frozen=True)
class HpaState:
    recommendations: tuple[tuple[float, int], ...] = ()  # (t, raw desired)
    up_events: tuple[tuple[float, int], ...] = ()         # (t, replicas added)
    down_events: tuple[tuple[float, int], ...] = ()       # (t, replicas removed)
    started: bool = False


@dataclass(frozen=True)
class Pod:
    """One replica as the controller sees its pod: what ``groupPods`` and the
    replica calculator read. Times are epoch seconds."""

    name: str
    value: float | None = None       # the sample (cpu: cores used); None: no sample
    request: float | None = None     # cpu: the CPU request in cores; None: 1 core
    phase: str = "Running"           # Running | Pending | Failed
    deleting: bool = False           # a deletion timestamp is set (scale-down under way)
    ready: bool | None = True        # the Ready condition; None: no condition yet
    ready_changed: float = LONG_AGO  # the Ready condition's last transition
    started: float | None = LONG_AGO  # status.startTime; None: not set
    sample_time: float | None = None  # the sample's timestamp (None: the decision's time)
    sample_window: float = 60.0       # the span the sample covers, s


@dataclass(frozen=True)
class Observation:
    """What the controller sees at ``now``: either ``pods`` (every replica with its
    times; the CPU metric needs them), or the short form ``samples`` / ``missing``
    / ``pending`` (replicas with a sample, in service without one, not yet in
    service), read as pods that have been ready for long."""

    now: float
    current: int                         # spec.replicas: the count asked for last
    samples: dict[str, float] = field(default_factory=dict)
    missing: int = 0
    pending: int = 0
    pods: tuple[Pod, ...] = ()

    def replicas(self) -> tuple[Pod, ...]:
        if self.pods:
            return self.pods
        out = [Pod(name, value) for name, value in self.samples.items()]
        out += [Pod(f"(missing {i + 1})") for i in range(self.missing)]
        out += [Pod(f"(pending {i + 1})", phase="Pending", ready=False)
                for i in range(self.pending)]
        return tuple(out)


@dataclass(frozen=True)
class Groups:
    """``groupPods``' answer."""

    ready: int
    unready: tuple[str, ...]
    missing: tuple[str, ...]
    ignored: tuple[str, ...]


@dataclass
class Proposal:
    """The replica calculator's answer, with what it computed on the way."""

    replicas: int | None         # None: no sample from a ready pod (the sync fails)
    average: float | None        # cpu: utilisation in % of the request; else the average
    raw_average: float | None    # cpu: cores used per pod; else the same as ``average``
    ratio: float | None
    within: bool
    reason: str
    groups: Groups


@dataclass
class HpaDecision:
    now: float
    current: int
    metric_per_replica: dict[str, float]  # cpu: % of each replica's request; else the sample
    average: float | None = None          # cpu: utilisation (% of request), as the HPA shows
    raw_average: float | None = None      # cpu: cores per replica
    ratio: float | None = None
    raw: int | None = None               # the replica calculator's proposal
    within_tolerance: bool | None = None
    after_tolerance: int | None = None   # raw, or current inside the band
    stabilized: int | None = None
    after_policies: int | None = None
    final: int | None = None
    ready_pods: int | None = None
    unready_pods: list[str] = field(default_factory=list)
    missing_pods: list[str] = field(default_factory=list)
    ignored_pods: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


def _milli(value: float) -> int:
    return int(round(value * 1000))


def _milli_up(value: float) -> int:
    """A quantity in milli-units as ``Quantity.MilliValue()`` gives it: rounded up
    (after rounding away float noise below a micro-unit)."""
    return math.ceil(round(value * 1_000_000) / 1000)


def _within(ratio: float, knobs: HpaKnobs) -> bool:
    up = knobs.tolerance if knobs.tolerance_up is None else knobs.tolerance_up
    down = knobs.tolerance if knobs.tolerance_down is None else knobs.tolerance_down
    return (1 - down) <= ratio <= (1 + up)


def group_pods(pods: tuple[Pod, ...], now: float, knobs: HpaKnobs) -> Groups:
    """``groupPods``: ready count, and the unready, missing and ignored pods."""
    ready, unready, missing, ignored = 0, [], [], []
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.append(pod.name)
            continue
        if pod.phase == "Pending":
            unready.append(pod.name)
            continue
        if pod.value is None:
            missing.append(pod.name)
            continue
        if knobs.cpu:
            if pod.ready is None or pod.started is None:
                not_ready = True
            elif pod.started + knobs.cpu_initialization_period > now:
                # Still initialising: its sample counts once it covers only ready time.
                stamp = now if pod.sample_time is None else pod.sample_time
                not_ready = pod.ready is False or \
                    stamp < pod.ready_changed + pod.sample_window
            else:
                # Later on, only a pod that never became ready is left out.
                not_ready = pod.ready is False and \
                    pod.started + knobs.delay_of_initial_readiness_status > pod.ready_changed
            if not_ready:
                unready.append(pod.name)
                continue
        ready += 1
    return Groups(ready, tuple(unready), tuple(missing), tuple(ignored))


def replica_calculator(obs: Observation, knobs: HpaKnobs) -> Proposal:
    """``GetResourceReplicas`` (``knobs.cpu``) or ``calcPlainMetricReplicas``."""
    pods = obs.replicas()
    groups = group_pods(pods, obs.now, knobs)
    left_out = set(groups.unready) | set(groups.ignored)
    metrics = {p.name: p.value for p in pods if p.value is not None and p.name not in left_out}
    if not metrics:
        return Proposal(None, None, None, None, True,
                        "no metric samples from ready replicas: no change", groups)
    if knobs.cpu:
        requests = {p.name: _milli_up(1.0 if p.request is None else p.request) for p in pods}
        values = {name: _milli_up(v) for name, v in metrics.items()}
        fallback = max(100.0, knobs.target)  # a missing pod on a scale-down (kubernetes#111433)

        def measure(vals: dict[str, int]) -> tuple[float, float, float]:
            used = sum(vals[n] for n in vals if n in requests)
            asked = sum(requests[n] for n in vals if n in requests)
            utilization = (used * 100) // asked
            return utilization / knobs.target, utilization, used / len(vals) / 1000

        def at_target(name: str) -> int:
            return int(requests[name] * fallback // 100)
    else:
        target = _milli(knobs.target)
        values = {name: _milli(v) for name, v in metrics.items()}

        def measure(vals: dict[str, int]) -> tuple[float, float, float]:
            usage = sum(vals.values()) // len(vals)  # integer division, as the controller
            return usage / target, usage / 1000, usage / 1000

        def at_target(name: str) -> int:
            return target

    ratio, average, raw_average = measure(values)

    def answer(replicas: int, within: bool, reason: str) -> Proposal:
        return Proposal(replicas, average, raw_average, ratio, within, reason, groups)

    scale_up_with_unready = bool(groups.unready) and ratio > 1
    if not scale_up_with_unready and not groups.missing:
        if _within(ratio, knobs):
            return answer(obs.current, True, "within tolerance")
        return answer(math.ceil(ratio * groups.ready), False, "replica calculator")
    filled = dict(values)
    for name in groups.missing:
        if ratio < 1:
            filled[name] = at_target(name)   # missing: as if at the target
        elif ratio > 1:
            filled[name] = 0                 # missing: as if idle
        # exactly on target: left out, so nothing moves (kubernetes#117845)
    if scale_up_with_unready:
        for name in groups.unready:
            filled[name] = 0                 # unready on a scale-up: as if idle
    new_ratio = measure(filled)[0]
    if _within(new_ratio, knobs) or (ratio < 1 < new_ratio) or (ratio > 1 > new_ratio):
        return answer(obs.current, True,
                      "within tolerance once missing/unready replicas are filled in")
    proposal = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1 and proposal > obs.current) or (new_ratio > 1 and proposal < obs.current):
        return answer(obs.current, False, "direction would flip: no change")
    return answer(proposal, False, "replica calculator (missing/unready replicas filled in)")


def _per_replica(obs: Observation, knobs: HpaKnobs) -> dict[str, float]:
    """For the record: each sample, as % of its own request for the CPU metric."""
    out = {}
    for pod in obs.replicas():
        if pod.value is None:
            continue
        if knobs.cpu:
            request = 1.0 if pod.request is None else pod.request
            if request > 0:
                out[pod.name] = round(100.0 * pod.value / request, 3)
        else:
            out[pod.name] = pod.value
    return out


def hpa_step(state: HpaState, obs: Observation, knobs: HpaKnobs) -> tuple[HpaState, HpaDecision]:
    now, current = obs.now, obs.current
    decision = HpaDecision(now, current, _per_replica(obs, knobs))
    if not state.started:
        # The controller stores the current count as its first recommendation.
        state = replace(state, started=True, recommendations=((now, current),))
    if current > knobs.max_replicas or current < knobs.min_replicas:
        final = min(max(current, knobs.min_replicas), knobs.max_replicas)
        decision.final = final
        decision.reasons.append("current count outside [min, max]: clamped, nothing else")
        return _record(state, now, current, final, knobs, store_rec=None), decision

    proposal = replica_calculator(obs, knobs)
    groups = proposal.groups
    decision.ready_pods = groups.ready
    decision.unready_pods = list(groups.unready)
    decision.missing_pods = list(groups.missing)
    decision.ignored_pods = list(groups.ignored)
    if proposal.replicas is None:
        # The controller fails this sync ("failed to get ... metric"): no scale, and no
        # recommendation stored that would hold a later scale-down back.
        decision.reasons.append(proposal.reason + ", nothing recorded")
        return _record(state, now, current, current, knobs, store_rec=None), decision

    raw = proposal.replicas
    decision.average, decision.raw_average = proposal.average, proposal.raw_average
    decision.ratio, decision.raw = proposal.ratio, raw
    decision.within_tolerance = proposal.within
    decision.after_tolerance = raw
    decision.reasons.append(proposal.reason)

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

    stabilized = stabilize(state, now, current, raw, knobs)
    decision.stabilized = stabilized
    if stabilized != raw:
        decision.reasons.append("scale-up stabilised" if raw >= current
                                else "scale-down stabilised")
    final = limit_rate(state, now, current, stabilized, knobs)
    decision.after_policies = final
    decision.final = final
    if final != stabilized:
        decision.reasons.append("scaling limited (behavior policies, min/max replicas)")
    return _record(state, now, current, final, knobs, store_rec=raw), decision


def stabilize(state: HpaState, now: float, current: int, raw: int, knobs: HpaKnobs) -> int:
    """``stabilizeRecommendationWithBehaviors``: the current count raised to the lowest
    recommendation of the scale-up window, lowered to the highest of the scale-down one."""
    up_rec = min([raw, *[r for t, r in state.recommendations if t > now - knobs.scale_up_window]])
    down_rec = max([raw, *[r for t, r in state.recommendations
                           if t > now - knobs.scale_down_window]])
    return min(max(current, up_rec), down_rec)


def limit_rate(state: HpaState, now: float, current: int, desired: int,
               knobs: HpaKnobs) -> int:
    """``convertDesiredReplicasWithBehaviorRate``: the behavior policies, then min/max."""
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
    """The count at the start of a policy's period: what was added in it taken back,
    what was removed in it put back."""
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
