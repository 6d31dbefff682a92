"""The autoscaler policies against cases computed by hand from Kubernetes' and Knative's
documentation and source (see the module docstrings), and against their own test vectors
(the numbers of replica_calculator_test.go, horizontal_test.go, autoscaler_test.go and
bucketing_test.go, not their code): pure functions, no stack."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from loadtest.autoscale.hpa import (
    LONG_AGO,
    HpaKnobs,
    HpaState,
    Observation,
    Pod,
    Policy,
    hpa_step,
    limit_rate,
    replica_calculator,
    stabilize,
)
from loadtest.autoscale.kpa import (
    KpaKnobs,
    KpaState,
    kpa_decide,
    kpa_record,
    kpa_step,
    window_average,
)
from loadtest.autoscale.metrics import cpu_pods, cpu_usage


def samples(n: int, value: float) -> dict[str, float]:
    return {f"hello-{i + 1}": value for i in range(n)}


# -- the replica calculator ---------------------------------------------------------

@pytest.mark.parametrize("average,expected", [
    (109, 10),   # ratio 1.09: inside the tolerance band
    (110, 10),   # 1.1: the band's edge is inside (inclusive)
    (111, 12),   # 1.11: ceil(11.1)
])
def test_tolerance_band_is_inclusive(average, expected):
    obs = Observation(now=0, current=10, samples=samples(10, average))
    assert replica_calculator(obs, HpaKnobs(target=100)).replicas == expected


def test_docs_example_ceil_of_ratio_times_replicas():
    # The docs: 50 replicas at 90 against a target of 75 -> ceil(1.2 * 50) = 60.
    obs = Observation(now=0, current=50, samples=samples(50, 90))
    p = replica_calculator(obs, HpaKnobs(target=75, max_replicas=100))
    assert (p.replicas, p.average, p.within) == (60, 90, False) and p.ratio == pytest.approx(1.2)


def test_per_direction_tolerance():
    knobs = HpaKnobs(target=100, tolerance_up=0.05, max_replicas=50)
    assert replica_calculator(Observation(0, 20, samples(20, 106)), knobs).replicas == 22
    assert replica_calculator(Observation(0, 20, samples(20, 94)), knobs).replicas == 20


def test_base_is_the_replicas_with_a_sample():
    # 10 asked, 8 reporting 50 against 100, 2 pending: a scale-down ignores the pending.
    obs = Observation(now=0, current=10, samples=samples(8, 50), pending=2)
    assert replica_calculator(obs, HpaKnobs(target=100)).replicas == 4


def test_missing_replicas_count_as_target_on_scale_down():
    # 3 of 4 report 20 against 50; the missing one counts as 50: (60+50)/4 = 27.5 -> ceil(2.2)
    obs = Observation(now=0, current=4, samples=samples(3, 20), missing=1)
    assert replica_calculator(obs, HpaKnobs(target=50)).replicas == 3


def test_missing_replica_that_flips_the_direction_means_no_change():
    # 3 report 120 against 100; the missing one as 0: 90 -> ratio 0.9, the direction flips.
    obs = Observation(now=0, current=4, samples=samples(3, 120), missing=1)
    assert replica_calculator(obs, HpaKnobs(target=100)).replicas == 4


# -- stabilisation and policies -----------------------------------------------------------

def test_default_scale_up_policy_max_of_4_pods_or_100_percent_per_15s():
    # From 3 replicas wanting 40 (load 40x the target): 7 (3+4 > 3*2), 14, 28, then max 50 -> 40.
    # (Values in the metric's milli-units, as the controller has them: a target of 100 keeps
    # 4000 / 28 exact enough that ceil() sees 40, not 40.01.)
    knobs = HpaKnobs(target=100, max_replicas=50)
    state = HpaState()
    cur, out = 3, []
    for t in (0, 15, 30, 45):
        state, d = hpa_step(state, Observation(t, cur, samples(cur, 4000 / cur)), knobs)
        out.append(d.final)
        cur = d.final
    assert out == [7, 14, 28, 40]


def test_sub_period_sync_keeps_the_budget_spent():
    knobs = HpaKnobs(target=1, max_replicas=50)
    state = HpaState(started=True, up_events=((0.0, 4),))
    state, d = hpa_step(state, Observation(10, 7, samples(7, 40 / 7)), knobs)
    assert d.final == 7  # period start 7-4 = 3 -> 3+4 = 7


def test_scale_down_waits_for_the_stabilisation_window():
    knobs = HpaKnobs(target=1, max_replicas=50)
    recs = ((15.0, 10), (75.0, 8), (135.0, 6), (195.0, 5), (255.0, 5))
    state = HpaState(recommendations=recs, started=True)
    state, d = hpa_step(state, Observation(300, 10, samples(10, 0.4)), knobs)
    assert (d.raw, d.stabilized, d.final) == (4, 10, 10)
    state, d = hpa_step(state, Observation(330, 10, samples(10, 0.4)), knobs)
    assert (d.stabilized, d.final) == (8, 8)  # (15, 10) left the window (t > now - 300)


def test_a_fresh_hpa_holds_the_current_count_for_a_window():
    knobs = HpaKnobs(target=1, max_replicas=50)
    state = HpaState()
    finals = []
    for t in range(0, 301, 15):
        state, d = hpa_step(state, Observation(t, 10, samples(10, 0.2)), knobs)
        finals.append(d.final)
    assert finals[:-1] == [10] * 20 and finals[-1] == 2


def test_scale_up_stabilisation_window_takes_the_lowest():
    knobs = HpaKnobs(target=1, max_replicas=50, scale_up_window=60)
    state = HpaState(recommendations=((255.0, 4), (270.0, 9), (285.0, 12)), started=True)
    _, d = hpa_step(state, Observation(300, 4, samples(4, 15 / 4)), knobs)
    assert (d.raw, d.stabilized, d.final) == (15, 4, 4)


def test_docs_policy_4_pods_or_10_percent_per_minute():
    knobs = HpaKnobs(target=1, max_replicas=100, scale_down_window=0,
                     down_policies=(Policy("Pods", 4, 60), Policy("Percent", 10, 60)))
    state = HpaState(started=True, recommendations=((-1.0, 80),))
    state, d = hpa_step(state, Observation(0, 80, samples(80, 10 / 80)), knobs)
    assert d.final == 72
    for t in (15, 30, 45):
        state, d = hpa_step(state, Observation(t, 72, samples(72, 10 / 72)), knobs)
        assert d.final == 72  # the 8 removed at t=0 still count against the minute
    state, d = hpa_step(state, Observation(60, 72, samples(72, 10 / 72)), knobs)
    assert d.final == 64


def test_select_policy_min_and_disabled():
    down = (Policy("Percent", 10, 60), Policy("Pods", 5, 60))
    knobs = HpaKnobs(target=1, max_replicas=100, scale_down_window=0, down_policies=down,
                     select_down="Min")
    _, d = hpa_step(HpaState(started=True), Observation(0, 80, samples(80, 10 / 80)), knobs)
    assert d.final == 75
    knobs = HpaKnobs(target=1, max_replicas=100, scale_down_window=0, select_down="Disabled")
    _, d = hpa_step(HpaState(started=True), Observation(0, 10, samples(10, 0.3)), knobs)
    assert d.final == 10


def test_min_and_max_replicas_bind():
    _, d = hpa_step(HpaState(started=True), Observation(0, 40, samples(40, 2.5)),
                    HpaKnobs(target=1, max_replicas=50))
    assert d.final == 50
    state = HpaState(started=True, recommendations=((0.0, 3),))
    _, d = hpa_step(state, Observation(400, 3, samples(3, 0.0)),
                    HpaKnobs(target=1, max_replicas=50))
    assert d.final == 1


def test_legacy_path_without_behavior():
    # 20 replicas' worth of load (target 120, 2400 in all: exact at every count used here)
    legacy = HpaKnobs(target=120, max_replicas=50, legacy=True)
    behaved = HpaKnobs(target=120, max_replicas=50)
    for knobs, expected in ((legacy, [4, 8, 16, 20]), (behaved, [6, 12, 20])):
        state, cur, out = HpaState(), 2, []
        for t in range(0, 61, 15):
            state, d = hpa_step(state, Observation(t, cur, samples(cur, 2400 / cur)), knobs)
            if d.final != cur:
                out.append(d.final)
            cur = d.final
        assert out == expected


def test_decision_keeps_every_intermediate_value():
    _, d = hpa_step(HpaState(), Observation(0, 2, samples(2, 300)), HpaKnobs(target=100))
    assert (d.average, d.raw, d.within_tolerance, d.stabilized, d.after_policies, d.final) == \
        (300, 6, False, 6, 6, 6)
    assert d.metric_per_replica == {"hello-1": 300, "hello-2": 300}


# -- KPA -------------------------------------------------------------------------------

def test_kpa_window_average():
    writes = tuple([(i, 10.0) for i in range(10)] + [(15, 10.0)])
    assert window_average(writes[:10], 9, 60) == 10
    assert window_average(writes[:10], 14, 60) == 10   # a trailing gap shrinks the divisor
    assert window_average(writes, 15, 60) == 6.875     # gaps between writes count as 0
    assert window_average(writes, 15, 6) == 10         # after a whole window of silence
    # A trailing gap of 51 s in a 60 s window: the 9 newest buckets remain, over 9.
    ramp = tuple((s, float(s)) for s in range(100))
    assert window_average(ramp, 150, 60) == sum(range(91, 100)) / 9


def kpa(state, now, ready, stable, panic, knobs):
    """Feed values so the stable window averages ``stable`` and the panic window ``panic``."""
    state = KpaState(panic_time=state.panic_time, max_panic_pods=state.max_panic_pods,
                     started=state.started)
    second = int(now)
    writes = [(s, stable) for s in range(second - 59, second - 5)]
    writes += [(s, panic) for s in range(second - 5, second + 1)]
    # keep the stable average exact: compensate the panic seconds inside the stable window
    total = stable * 60 - panic * 6
    writes = [(s, total / 54) for s, _ in writes[:54]] + writes[54:]
    state = KpaState(writes=tuple(writes), panic_time=state.panic_time,
                     max_panic_pods=state.max_panic_pods, started=state.started)
    return kpa_step(state, now, ready, knobs)


def test_kpa_stable_mode_and_rps_target():
    knobs = KpaKnobs(target=70)
    _, d = kpa(KpaState(started=True), 100, 5, 350, 350, knobs)
    assert (d.final, d.panicking) == (5, False)
    _, d = kpa(KpaState(started=True), 100, 5, 1000, 1000, KpaKnobs(target=140))
    assert d.final == 8


def test_kpa_scale_down_rate_halves_at_most():
    knobs = KpaKnobs(target=70)
    finals = []
    for ready in (10, 5, 2, 1):
        _, d = kpa(KpaState(started=True), 100, ready, 70, 70, knobs)
        finals.append(d.final)
    assert finals == [5, 2, 1, 1]


def test_kpa_panic_enters_holds_and_ends_after_a_stable_window():
    knobs = KpaKnobs(target=70)
    state, d = kpa(KpaState(started=True), 1000, 2, 150, 420, knobs)
    assert (d.final, d.panicking) == (6, True)
    state, d = kpa(state, 1030, 6, 100, 70, knobs)
    assert (d.final, d.panicking) == (6, True)   # no scale-down in panic
    state, d = kpa(state, 1060, 6, 100, 70, knobs)
    assert d.final == 6                            # exactly a window later: still panicking
    state, d = kpa(state, 1062, 6, 100, 70, knobs)
    assert (d.final, d.panicking) == (3, False)


def test_kpa_starts_in_panic_with_more_than_one_pod():
    knobs = KpaKnobs(target=70)
    state, d = kpa(KpaState(), 0, 5, 70, 70, knobs)
    assert d.final == 5 and d.panicking
    state, d = kpa(state, 62, 5, 70, 70, knobs)
    assert d.final == 2 and not d.panicking


def test_kpa_record_keeps_one_value_per_second_in_the_window():
    knobs = KpaKnobs(target=70)
    state = KpaState()
    for second in range(100):
        state = kpa_record(state, second, 1.0, knobs)
    state = kpa_record(state, 99, 5.0, knobs)
    assert len(state.writes) == 60 and state.writes[-1] == (99, 5.0)


def test_kpa_empty_panic_window_reads_as_zero_not_as_no_data():
    """Knative reports 'no data' only when the stable window is empty; an empty panic
    window averages 0. With a short stable window and data a second or two behind, the
    decider must still decide, on the data's own clock."""
    knobs = KpaKnobs(target=100, stable_window=12)  # panic window: 1 s
    state = KpaState(started=True)
    for second in range(100, 110):
        state = kpa_record(state, second, 300.0, knobs)
    # Read at 111.5, the last record is 2 s old: the panic window holds nothing.
    _, d = kpa_step(state, 111.5, 1, knobs)
    assert d.panic_average == 0.0 and d.final == 3 and not d.panicking
    # Read as of the last recorded second: the panic window sees the load and panics.
    _, d = kpa_step(state, 111.5, 1, knobs, data_now=109)
    assert d.panic_average == 300.0 and d.final == 3 and d.panicking
    # Nothing in the stable window: no decision.
    _, d = kpa_step(state, 130, 1, knobs)
    assert d.final is None and "no data" in d.reasons[0]


# -- judging the autoscaler (analysis side) ------------------------------------------------

def _autoscaled_run(offered, replica_changes, plan=None):
    """A per-second timeline with this offered load, and replicas added at these times."""
    from loadtest.analysis.autoscaling import analyse_autoscaling
    n = len(offered)
    events, live = [], 0
    for t, level in replica_changes:
        if level > live:
            events.append({"t": t - 1, "event": "scale_asked", "level": level,
                           "by": "autoscaler" if t else "up"})
            events += [{"t": t, "event": "replica_added", "hostname": f"h{i}"}
                       for i in range(live, level)]
            events.append({"t": t, "event": "scale_ready", "level": level})
        live = level
    meta = {"stack_events": events, "plan": {"autoscale": plan or {
        "policy": "hpa", "metric": "rps", "target": 100.0, "min_replicas": 1,
        "max_replicas": 10, "period": 3.0, "tolerance": 0.1}}}
    timeline = {"t0": 0.0, "seconds": n, "total": list(offered), "intended": list(offered),
                "p95_ms": [5.0] * n}
    return lambda slo_ms=None: analyse_autoscaling(meta, timeline, slo_ms, None, None)


def test_time_to_scale_runs_until_the_need_is_met_not_the_first_step():
    offered = [100] * 60 + [900] * 100
    a = _autoscaled_run(offered, [(0, 1), (80, 5), (110, 9)])()
    (rise,) = a["rises"]
    assert rise["needed"] == 9 and rise["ready_s"] == 50.0
    assert a["max_time_to_scale_s"] == 50.0


def test_noise_within_the_tolerance_is_not_a_rise():
    rng = np.random.default_rng(1)
    offered = 100 + rng.uniform(-3, 3, 120)
    a = _autoscaled_run(offered, [(0, 1)])()
    assert a["rises"] == [] and a["max_time_to_scale_s"] == 0.0


def test_a_manifest_s_scale_up_tolerance_decides_what_a_rise_is():
    """130 req/s on one replica of 100: beyond the default 0.1, within a manifest's
    scaleUp.tolerance of 0.5 (which the controller would not act on either)."""
    offered = [100] * 30 + [130] * 30
    plan = {"policy": "hpa", "metric": "rps", "target": 100.0, "min_replicas": 1,
            "max_replicas": 10, "period": 3.0, "tolerance": 0.1}
    assert len(_autoscaled_run(offered, [(0, 1)], plan=plan)()["rises"]) == 1
    plan["behavior"] = {"tolerance_up": 0.5, "tolerance_down": None}
    assert _autoscaled_run(offered, [(0, 1)], plan=plan)()["rises"] == []


def test_a_rise_shorter_than_one_period_is_not_judged():
    offered = [100] * 30 + [300] * 2 + [100] * 30
    assert _autoscaled_run(offered, [(0, 1)])()["rises"] == []
    offered = [100] * 30 + [300] * 10 + [100] * 30
    assert len(_autoscaled_run(offered, [(0, 1)])()["rises"]) == 1


def test_time_to_scale_unknown_without_a_capacity():
    from loadtest.analysis.findings import Findings
    from loadtest.analysis.thresholds import Thresholds
    from loadtest.analysis.verdict import autoscaling_checks
    offered = [100] * 30 + [400] * 30
    cpu = {"policy": "hpa", "metric": "cpu", "target": 60.0, "min_replicas": 1,
           "max_replicas": 4, "period": 3.0, "tolerance": 0.1}
    # p95 is never within a 1 ms SLO: no capacity can be measured, so no rise is known
    a = _autoscaled_run(offered, [(0, 1)], plan=cpu)(slo_ms=1.0)
    assert a["capacity_per_replica"] is None and a["max_time_to_scale_s"] is None
    (check,) = [c for c in autoscaling_checks(Findings(autoscaling=a),
                                              Thresholds(max_time_to_scale_s=30))
                if c.name == "time_to_scale_s"]
    assert check.passed is None and "capacity" in check.reason


def test_a_rise_unmet_at_the_end_fails_only_once_it_outlasted_the_limit():
    from loadtest.analysis.findings import Findings
    from loadtest.analysis.thresholds import Thresholds
    from loadtest.analysis.verdict import autoscaling_checks

    def check(offered):
        a = _autoscaled_run(offered, [(0, 1)])()
        return next(c for c in autoscaling_checks(Findings(autoscaling=a),
                                                  Thresholds(max_time_to_scale_s=30))
                    if c.name == "time_to_scale_s")
    assert check([100] * 60 + [400] * 10).passed is None
    assert check([100] * 60 + [400] * 40).passed is False


def test_hpa_a_sync_without_metrics_changes_nothing_and_stores_nothing():
    """Kubernetes fails such a sync: no scale and no recommendation, so a later scale-down
    is held back only by the recommendations that had data."""
    knobs = HpaKnobs(target=100, scale_down_window=300)
    state, d = hpa_step(HpaState(), Observation(0, 5, {f"r{i}": 100.0 for i in range(5)}),
                        knobs)
    for t in (15, 30, 45, 60):
        state, d = hpa_step(state, Observation(t, 5, {}), knobs)
        assert d.final is None and "no metric samples" in d.reasons[0]
    low = {f"r{i}": 10.0 for i in range(5)}
    state, d = hpa_step(state, Observation(299, 5, low), knobs)
    assert d.final == 5  # the t=0 recommendation is still in the window
    state, d = hpa_step(state, Observation(301, 5, low), knobs)
    assert d.final == 1  # it left the window; the empty syncs stored nothing


# == Kubernetes' own test vectors ==========================================================
#
# The numbers of pkg/controller/podautoscaler/replica_calculator_test.go and horizontal_test.go
# (kubernetes/kubernetes), case by case; each row names the Go test it comes from. Their pods
# have two containers: replica_calculator_test.go gives each container the level and the
# request (a pod uses and asks twice as much); horizontal_test.go halves both between the two
# (integer division: a level of 95 becomes 47 + 47). Times: a "hot" pod started now, a "cool"
# one three minutes ago, one without a start time at Go's zero time; the tests' controller
# has a 2 min CPU initialisation period and a 10 s readiness delay.

NOW = 1_700_000_000.0
HOT, COOL, ZERO = NOW, NOW - 180, LONG_AGO
K8S = {"cpu_initialization_period": 120.0, "delay_of_initial_readiness_status": 10.0}
T, F = True, False
R, P, X = "Running", "Pending", "Failed"


def rc_pods(n, levels, requests, readiness=None, start=None, phase=None, deleting=None):
    """Pods as replica_calculator_test.go builds them: the Ready condition's transition and
    the samples' timestamp are Go's zero time; a sample covers a minute."""
    return tuple(Pod(f"test-pod-{i}",
                     value=2 * levels[i] / 1000 if i < len(levels) else None,
                     request=2 * requests[i] if i < len(requests) else None,
                     phase=phase[i] if phase else R,
                     deleting=bool(deleting and deleting[i]),
                     ready=readiness[i] if readiness else T,
                     ready_changed=ZERO, started=start[i] if start else ZERO,
                     sample_time=ZERO, sample_window=60.0)
                 for i in range(n))


# (Go test, current, expected, container levels (m), container requests (cores), target %,
#  expected utilisation %, expected raw average per pod (m), pod options)
RESOURCE_CASES = [
    ("TestReplicaCalcScaleUp", 3, 5, [300, 500, 700], [1.0] * 3, 30, 50, 1000, {}),
    ("TestReplicaCalcScaleUpUnreadyLessScale", 3, 4, [300, 500, 700], [1.0] * 3, 30, 60, 1200,
     {"readiness": [F, T, T]}),
    ("TestReplicaCalcScaleUpHotCpuLessScale", 3, 4, [300, 500, 700], [1.0] * 3, 30, 60, 1200,
     {"start": [HOT, COOL, COOL]}),
    ("TestReplicaCalcScaleUpUnreadyNoScale", 3, 3, [400, 500, 700], [1.0] * 3, 30, 40, 800,
     {"readiness": [T, F, F]}),
    ("TestReplicaCalcScaleHotCpuNoScale", 3, 3, [400, 500, 700], [1.0] * 3, 30, 40, 800,
     {"readiness": [T, F, F], "start": [COOL, HOT, HOT]}),
    ("TestReplicaCalcScaleUpIgnoresFailedPods", 2, 4, [500, 700], [1.0] * 4, 30, 60, 1200,
     {"readiness": [T, T, F, F], "phase": [R, R, X, X]}),
    ("TestReplicaCalcScaleUpIgnoresDeletionPods", 2, 4, [500, 700], [1.0] * 4, 30, 60, 1200,
     {"readiness": [T, T, F, F], "deleting": [F, F, T, T]}),
    ("TestReplicaCalcScaleDown", 5, 3, [100, 300, 500, 250, 250], [1.0] * 5, 50, 28, 560, {}),
    ("TestReplicaCalcScaleDownExcludeUnreadyPods", 5, 2, [100, 300, 500, 250, 250], [1.0] * 5,
     50, 30, 600, {"readiness": [T, T, T, F, F]}),
    ("TestReplicaCalcScaleDownExcludeUnscheduledPods", 5, 1, [100], [1.0] * 5, 50, 10, 200,
     {"readiness": [T, F, F, F, F], "phase": [R, P, P, P, P]}),
    ("TestReplicaCalcScaleDownIgnoreHotCpuPods", 5, 2, [100, 300, 500, 250, 250], [1.0] * 5,
     50, 30, 600, {"start": [COOL, COOL, COOL, HOT, HOT]}),
    ("TestReplicaCalcScaleDownIgnoresFailedPods", 5, 3, [100, 300, 500, 250, 250], [1.0] * 7,
     50, 28, 560, {"readiness": [T] * 5 + [F, F], "phase": [R] * 5 + [X, X]}),
    ("TestReplicaCalcScaleDownIgnoresDeletionPods", 5, 3, [100, 300, 500, 250, 250], [1.0] * 7,
     50, 28, 560, {"readiness": [T] * 5 + [F, F], "deleting": [F] * 5 + [T, T]}),
    ("TestReplicaCalcTolerance", 3, 3, [1010, 1030, 1020], [0.9, 1.0, 1.1], 100, 102, 2040, {}),
    ("TestReplicaCalcMissingMetrics", 4, 3, [400, 95], [1.0] * 4, 100, 24, 495, {}),
    ("TestReplicaCalcMissingMetricsNoChangeEq", 2, 2, [1000], [1.0] * 2, 100, 100, 2000, {}),
    ("TestReplicaCalcMissingMetricsNoChangeGt", 2, 2, [1900], [1.0] * 2, 100, 190, 3800, {}),
    ("TestReplicaCalcMissingMetricsNoChangeLt", 2, 2, [600], [1.0] * 2, 100, 60, 1200, {}),
    ("TestReplicaCalcMissingMetricsUnreadyChange", 3, 3, [100, 450], [1.0] * 3, 50, 45, 900,
     {"readiness": [F, T, T]}),
    ("TestReplicaCalcMissingMetricsHotCpuNoChange", 3, 3, [100, 450], [1.0] * 3, 50, 45, 900,
     {"start": [HOT, COOL, COOL]}),
    ("TestReplicaCalcMissingMetricsUnreadyScaleUp", 3, 4, [100, 2000], [1.0] * 3, 50, 200,
     4000, {"readiness": [F, T, T]}),
    ("TestReplicaCalcMissingMetricsHotCpuScaleUp", 3, 4, [100, 2000], [1.0] * 3, 50, 200, 4000,
     {"readiness": [F, T, T], "start": [HOT, COOL, COOL]}),
    ("TestReplicaCalcMissingMetricsUnreadyScaleDown", 4, 3, [100, 100, 100], [1.0] * 4, 50, 10,
     200, {"readiness": [F, T, T, T]}),
    # a missing pod on a scale-down counts at max(100 %, target) of its request (#111433)
    ("TestReplicaCalcMissingMetricsScaleDownTargetOver100", 4, 2, [200, 100, 100],
     [1.0, 1.0, 2.0, 2.0], 300, 6, 200, {"readiness": [F, T, T, T]}),
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurge", 2, 2, [100, 100], [1.0] * 3, 50, 10, 200,
     {"phase": [R, R, R]}),
    # TestReplicaCalcComputedToleranceAlgImplementation: 10 pods at 150 m, requests around
    # 300 m; a target of 56 % just leaves the band (9 pods), 55 % stays in it.
    ("TestReplicaCalcComputedToleranceAlgImplementation", 10, 9, [150] * 10,
     [0.4, 0.2, 0.31, 0.29, 0.302, 0.298, 0.301, 0.299, 0.3, 0.3], 56, 50, 300, {}),
    ("TestReplicaCalcComputedToleranceAlgImplementation (no scale)", 10, 10, [150] * 10,
     [0.4, 0.2, 0.31, 0.29, 0.302, 0.298, 0.301, 0.299, 0.3, 0.3], 55, 50, 300, {}),
]
# Not ported: the per-container cases (TestReplicaCalc*Container*: one request for the whole
# replica here), TestReplicaCalcSuperfluousMetrics and TestReplicaCalcDisjointResourcesMetrics
# (samples only ever exist for our own replicas), TestReplicaCalcEmptyCPURequest (no request
# here means one core, by design).


@pytest.mark.parametrize("case", RESOURCE_CASES, ids=[c[0] for c in RESOURCE_CASES])
def test_kubernetes_resource_cpu_vectors(case):
    _, current, expected, levels, requests, target, util, raw, opts = case
    n = max(current, len(opts.get("phase") or []), len(requests))
    obs = Observation(now=NOW, current=current, pods=rc_pods(n, levels, requests, **opts))
    p = replica_calculator(obs, HpaKnobs(target=target, cpu=True, max_replicas=100, **K8S))
    assert p.replicas == expected
    assert p.average == util                        # expectedUtilization, a whole percent
    assert p.raw_average * 1000 == pytest.approx(raw)  # expectedValue, per pod


# (Go test, current, expected, levels (milli-units), target (milli), pod options, usage)
PODS_METRIC_CASES = [
    ("TestReplicaCalcScaleUpCM", 3, 4, [20000, 10000, 30000], 15000, {}, 20000),
    # readiness and start times do not matter for a Pods metric
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale", 3, 6, [50000, 10000, 30000], 15000,
     {"readiness": [T, T, F], "start": [COOL, COOL, HOT]}, 30000),
    ("TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown", 3, 7, [50000, 15000, 30000],
     15000, {"readiness": [F, T, F], "start": [HOT, COOL, HOT]}, 31666),
    ("TestReplicaCalcScaleDownCM", 5, 3, [12000] * 5, 20000, {}, 12000),
    ("TestReplicaCalcToleranceCM", 3, 3, [20000, 21000, 21000], 20000, {}, 20666),
    # kubernetes#117845: average exactly on target, 2 of 5 without a sample: no change
    ("TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", 5, 5, [20000, 19000, 21000], 20000,
     {}, 20000),
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM", 2, 2, [10000, 10000], 17000,
     {"phase": [R, R, R]}, 10000),
]


@pytest.mark.parametrize("case", PODS_METRIC_CASES, ids=[c[0] for c in PODS_METRIC_CASES])
def test_kubernetes_pods_metric_vectors(case):
    _, current, expected, levels, target, opts, usage = case
    n = max(current, len(opts.get("phase") or []))
    pods = tuple(replace(p, value=levels[i] / 1000 if i < len(levels) else None)
                 for i, p in enumerate(rc_pods(n, levels, [], **opts)))
    obs = Observation(now=NOW, current=current, pods=pods)
    p = replica_calculator(obs, HpaKnobs(target=target / 1000, max_replicas=100, **K8S))
    assert p.replicas == expected and p.average * 1000 == pytest.approx(usage)


def test_average_on_target_with_missing_samples_keeps_the_count_in_the_short_form_too():
    """kubernetes#117845 through the controller's own input: 3 of 5 replicas at 100 against
    100, 2 without a sample. Filling them with 0 (as before) made it 0.6 and scaled 5 -> 3."""
    obs = Observation(now=0, current=5, samples=samples(3, 100.0), missing=2)
    assert replica_calculator(obs, HpaKnobs(target=100)).replicas == 5
    state = HpaState(started=True)
    for t in range(0, 400, 15):
        state, d = hpa_step(state, Observation(t, 5, samples(3, 100.0), missing=2),
                            HpaKnobs(target=100))
        assert d.final == 5


def hz_pods(n, levels, requests, readiness=None, start=None, phase=None, deleting=None):
    """Pods as horizontal_test.go builds them: level and request halved between two
    containers; the Ready transition at the start time; samples taken now over a minute."""
    out = []
    for i in range(n):
        begun = start[i] if start else ZERO
        out.append(Pod(f"test-pod-{i}",
                       value=2 * (levels[i] // 2) / 1000 if i < len(levels) else None,
                       request=2 * (round(requests[i] * 1000) // 2) / 1000,
                       phase=phase[i] if phase else R, deleting=bool(deleting and deleting[i]),
                       ready=readiness[i] if readiness else T, ready_changed=begun,
                       started=begun, sample_time=NOW, sample_window=60.0))
    return tuple(out)


ONE = [1.0]
# (Go test, min, max, spec replicas, expected, CPU target %, levels (m), requests (cores),
#  pod options, stored recommendations (None: a fresh controller), knob overrides)
HORIZONTAL_CPU_CASES = [
    ("TestScaleUp", 2, 6, 3, 5, 30, [300, 500, 700], ONE * 3, {}, [], {}),
    ("TestScaleUpUnreadyLessScale", 2, 6, 3, 4, 30, [300, 500, 700], ONE * 3,
     {"readiness": [F, T, T]}, [], {}),
    ("TestScaleUpHotCpuLessScale", 2, 6, 3, 4, 30, [300, 500, 700], ONE * 3,
     {"start": [HOT, COOL, COOL]}, [], {}),
    ("TestScaleUpUnreadyNoScale", 2, 6, 3, 3, 30, [400, 500, 700], ONE * 3,
     {"readiness": [T, F, F]}, [], {}),
    ("TestScaleUpHotCpuNoScale", 2, 6, 3, 3, 30, [400, 500, 700], ONE * 3,
     {"readiness": [T, F, F], "start": [COOL, HOT, HOT]}, [], {}),
    ("TestScaleUpIgnoresFailedPods", 2, 6, 2, 4, 30, [500, 700], ONE * 4,
     {"readiness": [T, T, F, F], "phase": [R, R, X, X]}, [], {}),
    ("TestScaleUpIgnoresDeletionPods", 2, 6, 2, 4, 30, [500, 700], ONE * 4,
     {"readiness": [T, T, F, F], "deleting": [F, F, T, T]}, [], {}),
    ("TestScaleDown", 2, 6, 5, 3, 50, [100, 300, 500, 250, 250], ONE * 5, {}, [], {}),
    ("TestScaleDownStabilizeInitialSize", 2, 6, 5, 5, 50, [100, 300, 500, 250, 250], ONE * 5,
     {}, None, {}),
    ("TestScaleDownIncludeUnreadyPods", 2, 6, 5, 2, 50, [100, 300, 500, 250, 250], ONE * 5,
     {"readiness": [T, T, T, F, F]}, [], {}),
    ("TestScaleDownIgnoreHotCpuPods", 2, 6, 5, 2, 50, [100, 300, 500, 250, 250], ONE * 5,
     {"start": [COOL, COOL, COOL, HOT, HOT]}, [], {}),
    ("TestScaleDownIgnoresFailedPods", 2, 6, 5, 3, 50, [100, 300, 500, 250, 250], ONE * 7,
     {"readiness": [T] * 5 + [F, F], "phase": [R] * 5 + [X, X]}, [], {}),
    ("TestScaleDownIgnoresDeletionPods", 2, 6, 5, 3, 50, [100, 300, 500, 250, 250], ONE * 7,
     {"readiness": [T] * 5 + [F, F], "deleting": [F] * 5 + [T, T]}, [], {}),
    ("TestScaleDownWithScalingRules", 2, 6, 5, 3, 50, [100, 300, 500, 250, 250], ONE * 5, {},
     [], {"up_policies": (Policy("Percent", 100, 15),)}),
    ("TestTolerance", 1, 5, 3, 3, 100, [1010, 1030, 1020], [0.9, 1.0, 1.1], {}, None, {}),
    ("TestMinReplicas", 2, 5, 3, 2, 90, [10, 95, 10], [0.9, 1.0, 1.1], {}, [], {}),
    ("TestMinReplicasDesiredZero", 2, 5, 3, 2, 90, [0, 0, 0], [0.9, 1.0, 1.1], {}, [], {}),
    ("TestTooFewReplicas", 3, 5, 2, 3, 90, [], [], {}, None, {}),
    ("TestTooManyReplicas", 3, 5, 10, 5, 90, [], [], {}, None, {}),
    ("TestMaxReplicas", 2, 5, 3, 5, 90, [8000, 9500, 1000], [0.9, 1.0, 1.1], {}, None, {}),
    ("TestMissingMetrics", 2, 6, 4, 3, 100, [400, 95], ONE * 4, {}, [], {}),
    ("TestEventCreated", 1, 5, 1, 2, 50, [200], [0.2], {}, None, {}),
    ("TestEventNotCreated", 1, 5, 2, 2, 50, [200, 200], [0.4, 0.4], {}, None, {}),
    ("TestMissingReports", 1, 5, 4, 2, 50, [200], [0.2], {}, [], {}),
    ("TestUpscaleCap", 1, 100, 3, 24, 10, [100, 200, 300], [0.1] * 3, {}, None,
     {"up_policies": (Policy("Percent", 700, 60),)}),
    ("TestUpscaleCapGreaterThanMaxReplicas", 1, 20, 3, 20, 10, [100, 200, 300], [0.1] * 3, {},
     None, {"up_policies": (Policy("Percent", 700, 60),)}),
    ("TestMoreReplicasThanSpecNoScale", 1, 8, 4, 4, 50, [500] * 5, ONE * 5, {}, None, {}),
    ("TestStabilizeDownscale", 1, 5, 4, 4, 100, [50, 50, 50], [0.1] * 3, {},
     [(NOW - 600, 10), (NOW - 60, 4)], {}),
    ("TestComputedToleranceAlgImplementation", 0, 1000, 10, 9, 56, [150] * 10,
     [0.4, 0.2, 0.31, 0.29, 0.302, 0.298, 0.301, 0.299, 0.3, 0.3], {}, [], {}),
    ("TestComputedToleranceAlgImplementation (no scale)", 0, 1000, 10, 10, 55, [150] * 10,
     [0.4, 0.2, 0.31, 0.29, 0.302, 0.298, 0.301, 0.299, 0.3, 0.3], {}, [], {}),
    ("TestScaleUpRCImmediately", 2, 6, 1, 2, 80, [0] * 4, ONE * 4, {}, None, {}),
    ("TestScaleDownRCImmediately", 2, 5, 6, 5, 50, [8000, 9500, 1000], [0.9, 1.0, 1.1], {},
     None, {}),
    ("TestScaleUpOneMetricInvalid (the CPU metric alone)", 2, 6, 3, 4, 30, [300, 400, 500],
     ONE * 3, {}, None, {}),
    # no sample at all: the sync fails and nothing changes
    ("TestEmptyMetrics", 2, 6, 4, 4, 100, [], ONE * 4, {}, None, {}),
]
# Not ported: scale to zero (min 0 with a desired 0), Object/External metrics, conditions,
# events and selectors, TestSuperfluousMetrics (see above).


@pytest.mark.parametrize("case", HORIZONTAL_CPU_CASES, ids=[c[0] for c in HORIZONTAL_CPU_CASES])
def test_kubernetes_horizontal_cpu_vectors(case):
    _, lo, hi, spec, expected, target, levels, requests, opts, recs, extra = case
    n = len(requests) if requests else spec
    obs = Observation(now=NOW, current=spec, pods=hz_pods(n, levels, requests or ONE * n, **opts))
    state = HpaState() if recs is None else HpaState(started=True, recommendations=tuple(recs))
    knobs = HpaKnobs(target=target, min_replicas=lo, max_replicas=hi, cpu=True, **K8S, **extra)
    _, d = hpa_step(state, obs, knobs)
    assert (spec if d.final is None else d.final) == expected


# (Go test, min, max, spec, expected, target (milli), levels (milli), pod options)
HORIZONTAL_PODS_CASES = [
    ("TestScaleUpCM", 2, 6, 3, 4, 15000, [20000, 10000, 30000], {}),
    ("TestScaleUpCMUnreadyAndHotCpuNoLessScale", 2, 6, 3, 6, 15000, [50000, 10000, 30000],
     {"readiness": [T, T, F], "start": [COOL, COOL, HOT]}),
    ("TestScaleUpCMUnreadyandCpuHot", 2, 6, 3, 6, 15000, [50000, 15000, 30000],
     {"readiness": [F, T, F], "start": [HOT, COOL, HOT]}),
    ("TestScaleUpHotCpuNoScaleWouldScaleDown", 2, 6, 3, 6, 15000, [50000, 15000, 30000],
     {"start": [HOT, COOL, HOT]}),
    ("TestScaleDownCM", 2, 6, 5, 3, 20000, [12000] * 5, {}),
    ("TestToleranceCM", 1, 5, 3, 3, 20000, [20000, 20001, 21000], {}),
    ("TestNoBackoffUpscaleCM", 1, 5, 3, 4, 15000, [20000, 10000, 30000], {}),
]


@pytest.mark.parametrize("case", HORIZONTAL_PODS_CASES,
                         ids=[c[0] for c in HORIZONTAL_PODS_CASES])
def test_kubernetes_horizontal_pods_metric_vectors(case):
    _, lo, hi, spec, expected, target, levels, opts = case
    pods = tuple(replace(p, value=levels[i] / 1000)
                 for i, p in enumerate(hz_pods(spec, levels, ONE * spec, **opts)))
    knobs = HpaKnobs(target=target / 1000, min_replicas=lo, max_replicas=hi, **K8S)
    _, d = hpa_step(HpaState(started=True), Observation(NOW, spec, pods=pods), knobs)
    assert d.final == expected


def uniform(changes, period):
    """generateEventsUniformDistribution: each change in the middle of its share of the
    last ``period`` seconds, oldest first."""
    seg = period / len(changes)
    return tuple((NOW - int(period - seg * (i + 1) + seg / 2), c) for i, c in enumerate(changes))


def rules(pods=0, pods_period=0, percent=0, percent_period=0):
    """generateScalingRules: a Pods and/or a Percent policy (selectPolicy Max)."""
    out = ()
    if pods:
        out += (Policy("Pods", pods, pods_period),)
    if percent:
        out += (Policy("Percent", percent, percent_period),)
    return out


UP_DEFAULT = HpaKnobs(target=1).up_policies
DOWN_DEFAULT = HpaKnobs(target=1).down_policies
# TestScalingWithRules: (name, min, max, current, desired, expected, up, down, up events,
# down events)
SCALING_RULES = [
    ("prenormalized desired replicas within range", 3, 8, 5, 7, 7, None, None, (), ()),
    ("prenormalized desired replicas < minReplicas", 2, 8, 3, 1, 2, None, None, (), ()),
    ("within range when minReplicas is 0", 0, 10, 1, 0, 0, None, None, (), ()),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 1, 10, 20, 1000, 10, None,
     None, (), ()),
    ("desired replica count is more than the maximum", 100, 150, 100, 1000, 150, None, None,
     (), ()),
    ("scaleUpLimit < maxReplicas with user policies", 1, 2000, 3, 1000, 4,
     rules(percent=1, percent_period=60), None, (), ()),
    # marked testThis, so skipped in Go; the arithmetic holds all the same
    ("scaleDownLimit > minReplicas with user defined policies", 3, 2000, 1000, 3, 980, None,
     rules(20, 60), (), ()),
    ("scaleUp with default behavior", 1, 1000, 10, 50, 20, None, None, (), ()),
    ("scaleUp with pods policy larger than percent policy", 1, 1000, 10, 500, 110,
     rules(100, 60, 100, 60), None, (), ()),
    ("scaleUp with percent policy larger than pods policy", 1, 1000, 10, 500, 20,
     rules(2, 60, 100, 60), None, (), ()),
    ("scaleUp with MaxReplicas limitation with large pod policy", 1, 1000, 10, 50, 50,
     rules(100, 60), None, (), ()),
    ("scaleUp with MaxReplicas limitation with large percent policy", 1, 1000, 10, 50, 50,
     rules(10000, 60), None, (), ()),
    ("scaleUp with pod policy limitation", 1, 1000, 10, 50, 40, rules(30, 60), None, (), ()),
    ("scaleUp with percent policy limitation", 1, 1000, 10, 50, 30,
     rules(percent=200, percent_period=60), None, (), ()),
    ("scaleDown with percent policy larger than pod policy", 1, 1000, 100, 2, 80, None,
     rules(20, 60, 1, 60), (), ()),
    ("scaleDown with pod policy larger than percent policy", 1, 1000, 100, 2, 98, None,
     rules(2, 60, 1, 60), (), ()),
    ("scaleDown with MinReplicas limitation with large pod policy", 1, 1000, 10, 0, 1, None,
     rules(100, 60), (), ()),
    ("scaleDown with MinReplicas limitation with large percent policy", 5, 1000, 10, 2, 5,
     None, rules(percent=100, percent_period=60), (), ()),
    ("scaleDown with pod policy limitation", 1, 1000, 10, 2, 5, None, rules(5, 60), (), ()),
    ("scaleDown with percent policy limitation", 1, 1000, 10, 5, 5, None,
     rules(percent=50, percent_period=60), (), ()),
    ("scaleUp MaxReplicas limitation, large pod policy and events", 1, 200, 100, 500, 200,
     rules(300, 60), None, uniform([1, 5, 9], 120), ()),
    ("scaleUp MaxReplicas limitation, large percent policy and events", 1, 200, 100, 500, 200,
     rules(percent=10000, percent_period=60), None, uniform([1, 5, 9], 120), ()),
    ("scaleUp with a lot of recent scale up events", 1, 1000, 100, 500, 100, rules(5, 120),
     None, uniform([1, 5, 9], 120), ()),
    ("scaleUp with pod policy and previous scale up events", 1, 1000, 100, 500, 235,
     rules(150, 120), None, uniform([1, 5, 9], 120), ()),
    ("scaleUp with percent policy and previous scale up events", 1, 1000, 100, 500, 255,
     rules(percent=200, percent_period=120), None, uniform([1, 5, 9], 120), ()),
    ("scaleUp with percent policy and previous scale up and down events", 1, 1000, 6, 24, 16,
     rules(percent=300, percent_period=300), None, uniform([4], 120), uniform([2], 120)),
    ("scaleDown with default policy and previous events", 1, 1000, 10, 5, 5, None, None, (),
     uniform([1, 5, 9], 120)),
    ("scaleDown MinReplicas=nil limitation, large pod policy, previous events", 1, 1000, 100,
     0, 1, None, rules(115, 120), (), uniform([1, 5, 9], 120)),
    ("scaleDown MinReplicas limitation, large pod policy, previous events", 5, 1000, 100, 0, 5,
     None, rules(130, 120), (), uniform([1, 5, 9], 120)),
    ("scaleDown MinReplicas limitation, large percent policy, previous events", 5, 1000, 100,
     2, 5, None, rules(percent=100, percent_period=120), (), uniform([1, 5, 9], 120)),
    ("scaleDown with pod policy limitation and previous events", 1, 1000, 100, 2, 100, None,
     rules(5, 120), (), uniform([1, 5, 9], 120)),
    ("scaleDown with percent policy limitation and previous events", 1, 1000, 100, 0, 56,
     None, rules(percent=50, percent_period=120), (), uniform([2, 4, 6], 120)),
    ("scaleDown with percent policy and previous scale up and down events", 1, 1000, 10, 1, 6,
     None, rules(percent=50, percent_period=180), uniform([2], 120), uniform([4], 120)),
    ("scaleDown with previous events preventing further scale down", 1, 1000, 100, 0, 100,
     None, rules(percent=10, percent_period=120), (), uniform([10, 10, 10], 120)),
    ("scaleDown with previous events still allowing more scale down", 1, 1000, 10, 5, 5, None,
     rules(percent=1000, percent_period=120), (), uniform([10, 10, 10], 120)),
    ("'outdated' flag for one behavior for up", 1, 1000, 100, 200, 200, rules(1000, 60), None,
     uniform([8, 12, 9, 11], 120), ()),
    ("events not 'outdated' for two policies for up", 1, 1000, 100, 200, 200,
     rules(1000, 120, 100, 60), None, uniform([8, 12, 9, 11], 120), ()),
    ("events 'outdated' for two policies for up", 1, 1000, 100, 200, 200,
     rules(1000, 30, 100, 60), None, uniform([8, 12, 9, 11], 120), ()),
    ("'outdated' flag for one behavior for down", 1, 1000, 100, 5, 5, None, rules(1000, 60),
     (), uniform([8, 12, 9, 11], 120)),
    ("events not 'outdated' for two policies for down", 1, 1000, 100, 5, 5, None,
     rules(1000, 120, 100, 60), (), uniform([8, 12, 9, 11], 120)),
    ("events 'outdated' for two policies for down", 1, 1000, 100, 5, 5, None,
     rules(1000, 30, 100, 60), (), uniform([8, 12, 9, 11], 120)),
]


@pytest.mark.parametrize("case", SCALING_RULES, ids=[c[0] for c in SCALING_RULES])
def test_kubernetes_scaling_with_rules(case):
    _, lo, hi, current, desired, expected, up, down, ups, downs = case
    knobs = HpaKnobs(target=1, min_replicas=lo, max_replicas=hi,
                     up_policies=UP_DEFAULT if up is None else up,
                     down_policies=DOWN_DEFAULT if down is None else down)
    state = HpaState(started=True, up_events=ups, down_events=downs)
    assert limit_rate(state, NOW, current, desired, knobs) == expected


def test_kubernetes_select_policy_min():
    # TestCalculateScaleUpLimitWithScalingRules, TestCalculateScaleDownLimitWithBehaviors
    both = (Policy("Pods", 2, 60), Policy("Percent", 50, 60))
    knobs = HpaKnobs(target=1, min_replicas=0, max_replicas=1000, up_policies=both,
                     down_policies=both, select_up="Min", select_down="Min")
    assert limit_rate(HpaState(started=True), NOW, 1, 1000, knobs) == 2
    assert limit_rate(HpaState(started=True), NOW, 5, 0, knobs) == 3


# TestNormalizeDesiredReplicasWithBehavior: (name, recommendations (seconds ago, count),
# current, desired, expected, scale-up window, scale-down window)
STABILIZATION = [
    ("empty recommendations for scaling down", [], 100, 5, 5, 0, 0),
    ("simple scale down stabilization", [(120, 4), (60, 5)], 100, 3, 5, 0, 180),
    ("simple scale up stabilization", [(120, 4), (60, 5)], 1, 7, 4, 300, 0),
    ("no scale down stabilization", [(120, 1), (60, 2)], 100, 3, 3, 300, 0),
    ("no scale up stabilization", [(120, 4), (60, 5)], 1, 3, 3, 0, 300),
    ("no scale down stabilization, reuse recommendation element", [(600, 10), (540, 9)], 100,
     3, 3, 0, 0),
    ("no scale up stabilization, reuse recommendation element", [(600, 10), (540, 9)], 1, 100,
     100, 0, 0),
    ("scale down stabilization, reuse one of obsolete recommendation element",
     [(600, 10), (60, 4), (120, 5), (540, 9)], 100, 3, 5, 0, 180),
    ("scale up stabilization, reuse one of obsolete recommendation element",
     [(6000, 10), (60, 6), (120, 5), (180, 9)], 1, 100, 5, 300, 0),
    ("do not scale up when prenormalized rec goes down", [(6000, 2), (180, 3)], 2, 1, 2, 300,
     300),
    ("do not scale down when prenormalized rec goes up", [(6000, 2), (180, 1)], 2, 3, 2, 300,
     300),
]


@pytest.mark.parametrize("case", STABILIZATION, ids=[c[0] for c in STABILIZATION])
def test_kubernetes_stabilization(case):
    _, recs, current, desired, expected, up_window, down_window = case
    state = HpaState(started=True, recommendations=tuple((NOW - ago, r) for ago, r in recs))
    knobs = HpaKnobs(target=1, scale_up_window=up_window, scale_down_window=down_window)
    assert stabilize(state, NOW, current, desired, knobs) == expected


# -- the CPU metric from the stack's readings (metrics.py) ----------------------------------

def test_cpu_usage_per_replica_over_the_window():
    # hello-1 burns 0.25 s a second throughout; hello-2 joins at t=104 and burns 0.5 s a second
    samples = [(100.0 + i, {"hello-1": 10 + 0.25 * i,
                            **({"hello-2": 3 + 0.5 * (i - 4)} if i >= 4 else {})})
               for i in range(11)]
    usage = cpu_usage(samples, 103.0, 110.0)
    assert usage["hello-1"] == pytest.approx((0.25, 110.0, 7.0))
    assert usage["hello-2"] == pytest.approx((0.5, 110.0, 6.0))
    assert cpu_usage(samples, 109.5, 110.0) == {}  # one sample each: no rate yet


def test_cpu_pods_and_the_utilisation_of_the_request():
    """Two replicas limited to a quarter core each, busy at 0.2 and 0.1 cores against a
    request of 0.25 cores: 80 % and 40 %, 60 % together (the HPA's figure); a third asked for
    and not yet in service is a pending pod, which on this scale-up counts as idle."""
    usage = {"hello-1": (0.2, 110.0, 15.0), "hello-2": (0.1, 110.0, 15.0)}
    since = {"hello-1": 50.0, "hello-2": 60.0}
    pods = cpu_pods(usage, since, {"hello-1": 40.0, "hello-2": 55.0}, 0.25, 3, 110.0)
    assert [p.name for p in pods] == ["hello-1", "hello-2", "(pending 1)"]
    assert pods[0].started == 40.0 and pods[0].ready_changed == 50.0
    assert pods[2].phase == "Pending"
    knobs = HpaKnobs(target=50, cpu=True, max_replicas=10)
    state, d = hpa_step(HpaState(started=True), Observation(110.0, 3, pods=pods), knobs)
    assert d.metric_per_replica == {"hello-1": 80.0, "hello-2": 40.0}
    assert d.average == 60 and d.ratio == pytest.approx(1.2)
    # 1.2 with a pending pod: again with it at 0 -> 300 m / 750 m = 40 %: the direction flips
    assert d.unready_pods == ["(pending 1)"] and d.final == 3
    # Without the pending replica the same readings ask for ceil(1.2 x 2) = 3.
    pods2 = cpu_pods(usage, since, {}, 0.25, 2, 110.0)
    _, d = hpa_step(HpaState(started=True), Observation(110.0, 2, pods=pods2), knobs)
    assert d.final == 3


def test_cpu_without_a_request_is_the_share_of_one_core():
    usage = {"hello-1": (0.9, 110.0, 15.0)}
    pods = cpu_pods(usage, {"hello-1": None}, {}, None, 1, 110.0)
    _, d = hpa_step(HpaState(started=True), Observation(110.0, 1, pods=pods),
                    HpaKnobs(target=60, cpu=True, max_replicas=4))
    assert d.average == 90 and d.raw == 2


def test_a_new_replica_counts_once_its_sample_covers_only_ready_time():
    """Within the CPU initialisation period a sample that began before the replica became
    ready is left out; one that began after counts."""
    knobs = HpaKnobs(target=50, cpu=True, max_replicas=10)
    busy = {"hello-1": (0.8, 200.0, 15.0)}
    # hello-2 ready at 190; its sample began at 185 (window 15 s ending at 200): unready
    early = {**busy, "hello-2": (0.9, 200.0, 15.0)}
    since = {"hello-1": 0.0, "hello-2": 190.0}
    pods = cpu_pods(early, since, {"hello-2": 180.0}, None, 2, 200.0)
    _, d = hpa_step(HpaState(started=True), Observation(200.0, 2, pods=pods), knobs)
    assert d.unready_pods == ["hello-2"]
    # the same replica's sample began at 192, after it became ready: it counts
    late = {**busy, "hello-2": (0.9, 200.0, 8.0)}
    pods = cpu_pods(late, since, {"hello-2": 180.0}, None, 2, 200.0)
    _, d = hpa_step(HpaState(started=True), Observation(200.0, 2, pods=pods), knobs)
    assert d.unready_pods == [] and d.ready_pods == 2 and d.average == 85


# -- Knative (pkg/autoscaler) ---------------------------------------------------------------

@pytest.mark.parametrize("stable,expected", [(60, 6.0), (25, 3.0), (15, 2.0), (6, 1.0),
                                             (12, 1.0), (35, 4.0), (3600, 360.0)])
def test_kpa_panic_window_rounds_halves_away_from_zero(stable, expected):
    """Knative: Duration(stable x 10 %).Round(time.Second), at least 1 s. Python's round()
    would give 2 s for 25 s (2.5 to even), 2 s for 15 s, 4 s for 35 s (3.5 -> 4 either way)."""
    assert KpaKnobs(target=1, stable_window=stable).panic_window == expected


def test_knative_bucket_window_average():
    """TestTimedFloat64BucketsWindowAverage (bucketing_test.go), 5 s window, 1 s buckets."""
    knobs = KpaKnobs(target=1, stable_window=5)

    def avg(state, now):
        return window_average(state.writes, now, 5, state.stable_first)

    t0 = 1000
    s = kpa_record(KpaState(), t0, 1, knobs)
    assert avg(s, t0) == 1                            # firstWrite used: not 0.2
    for i in range(1, 5):
        s = kpa_record(s, t0 + i, i + 1, knobs)
    assert avg(s, t0 + 4) == 15 / 5
    assert avg(s, t0 + 3.6) == 15 / 5                 # now lags behind the last write
    assert avg(s, t0 + 6) == (15 - 1 - 2) / (5 - 2)   # a short hole
    assert avg(s, t0 + 10) is None                    # a long hole: no data (IsEmpty)
    s = kpa_record(s, t0 + 6, 91, knobs)
    assert avg(s, t0 + 6) == (15 - 1 - 2 + 91) / 5    # a write after a hole
    now = t0 + 60
    s = kpa_record(s, now, 1984, knobs)
    assert avg(s, now) == 1984                        # much later: starts afresh
    s = kpa_record(s, now - 3, 4, knobs)
    assert avg(s, now) == (4 + 1984) / 4              # an earlier second
    now += 1
    s = kpa_record(s, now, 5, knobs)
    assert avg(s, now) == (4 + 1984 + 5) / 5
    s = kpa_record(s, now - 3, 10, knobs)
    assert avg(s, now) == (4 + 10 + 1984 + 5) / 5
    s = kpa_record(s, now - 6, 10, knobs)             # too early: ignored
    s = kpa_record(s, now - 5, 10, knobs)             # a whole window back: ignored
    assert avg(s, now) == (4 + 10 + 1984 + 5) / 5
    s = kpa_record(s, now + 5, 10, knobs)             # after exactly a window: cleared
    assert avg(s, now + 5) == 10


def test_kpa_exactly_a_window_without_writes_averages_zero_not_no_data():
    # IsEmpty is now - lastWrite > window; at exactly a window the average is 0.
    writes = ((100, 5.0),)
    assert window_average(writes, 106, 6) == 0.0
    assert window_average(writes, 107, 6) is None


def test_kpa_a_gap_shorter_than_the_window_still_counts_as_zeros_after_pruning():
    """Writes 0..50, silence, then 100..110 (a 49 s gap in a 60 s window): Knative's buckets
    keep their first write at 0, so the 11 new seconds are averaged over 60, not over 11."""
    knobs = KpaKnobs(target=1)
    s = KpaState()
    for second in [*range(0, 51), *range(100, 111)]:
        s = kpa_record(s, second, 60.0, knobs)
    assert s.stable_first == 0 and s.panic_first == 100
    _, d = kpa_step(s, 110, 1, knobs)
    assert d.stable_average == 60 * 11 / 60 and d.panic_average == 60.0


def knative(target, **kw):
    """newTestAutoscaler (autoscaler_test.go): scale rates 10, panic at 200 %, 60 s window,
    created with one ready pod (so not in panic); no floor of our own."""
    return KpaKnobs(target=target, min_replicas=0, max_scale_up_rate=10,
                    max_scale_down_rate=10, **kw), KpaState(started=True, max_panic_pods=1)


def test_knative_stable_mode():
    # TestAutoscalerStableModeIncreaseWithConcurrencyDefault / ...WithRPS
    knobs, s = knative(10)
    s, d = kpa_decide(s, 0, 1, 50, 10, knobs)
    assert d.final == 5
    s, d = kpa_decide(s, 0, 1, 100, 10, knobs)
    assert d.final == 10
    knobs, s = knative(10)
    s, d = kpa_decide(s, 0, 1, 50, 50, knobs)
    s, d = kpa_decide(s, 0, 1, 100, 99, knobs)
    assert d.final == 10
    # TestAutoscalerStableModeDecrease
    knobs, s = knative(10)
    s, d = kpa_decide(s, 0, 8, 100, 100, knobs)
    assert d.final == 10
    s, d = kpa_decide(s, 0, 8, 50, 50, knobs)
    assert d.final == 5


def test_knative_unpanic_after_slow_increase_and_extend_panic():
    # TestAutoscalerUnpanicAfterSlowIncrease
    knobs, s = knative(1)
    s, d = kpa_decide(s, 1000, 10, 11, 25, knobs)
    assert d.final == 25 and s.panic_time == 1000
    s, d = kpa_decide(s, 1030, 40, 30, 41, knobs)
    assert d.final == 41 and s.panic_time == 1000      # not moved: 41/40 is under 200 %
    s, d = kpa_decide(s, 1062, 55, 50, 56, knobs)
    assert d.final == 50 and s.panic_time is None
    # TestAutoscalerExtendPanicWindow
    knobs, s = knative(1)
    s, d = kpa_decide(s, 1000, 10, 11, 25, knobs)
    s, d = kpa_decide(s, 1030, 40, 30, 80, knobs)
    assert d.final == 80 and s.panic_time == 1030


def test_knative_panic_tracks_exponential_growth_then_scales_down_after_a_window():
    # TestAutoscalerPanicModeExponentialTrackAndStabilize
    knobs, s = knative(1)
    finals = []
    for ready, load in ((1, 6), (6, 36), (36, 216), (216, 1296), (1296, 1296)):
        s, d = kpa_decide(s, 0, ready, load, load, knobs)
        finals.append(d.final)
    assert finals == [6, 36, 216, 1296, 1296]
    # TestAutoscalerPanicThenUnPanicScaleDown
    knobs, s = knative(10)
    s, d = kpa_decide(s, 0, 1, 100, 100, knobs)
    assert d.final == 10
    s, d = kpa_decide(s, 0, 10, 100, 1000, knobs)
    assert d.final == 100
    s, d = kpa_decide(s, 30, 10, 1, 1, knobs)
    assert d.final == 100                                 # still in panic
    s, d = kpa_decide(s, 61, 10, 1, 1, knobs)
    assert d.final == 1


def test_knative_rate_limits_and_no_ready_pods():
    # TestAutoscalerRateLimitScaleUp / ScaleDown / UseOnePodAsMinimumIfEndpointsNotFound
    knobs, s = knative(10)
    s, d = kpa_decide(s, 0, 1, 1000, 1001, knobs)
    assert d.final == 10
    s, d = kpa_decide(s, 0, 10, 1000, 1001, knobs)
    assert d.final == 100
    knobs, s = knative(10)
    s, d = kpa_decide(s, 0, 100, 1, 1, knobs)
    assert d.final == 10
    s, d = kpa_decide(s, 0, 10, 1, 1, knobs)
    assert d.final == 1
    knobs, s = knative(10)
    _, d = kpa_decide(s, 0, 0, 1000, 888, knobs)
    assert d.final == 10


def test_knative_starts_in_panic_above_one_pod():
    # TestStartInPanicMode
    knobs = KpaKnobs(target=100, panic_threshold=2.2, max_scale_up_rate=10,
                     max_scale_down_rate=10)
    for ready in (0, 1):
        s, _ = kpa_decide(KpaState(), 0, ready, 10, 10, knobs)
        assert s.panic_time is None and s.max_panic_pods == ready
    s, _ = kpa_decide(KpaState(), 0, 2, 10, 10, knobs)
    assert s.panic_time == 0 and s.max_panic_pods == 2
