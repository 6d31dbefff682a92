"""The autoscaler policies against cases computed by hand from Kubernetes' and Knative's
documentation and source (see the module docstrings): pure functions, no stack."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.autoscale.hpa import (
    HpaKnobs,
    HpaState,
    Observation,
    Policy,
    hpa_step,
    replica_calculator,
)
from loadtest.autoscale.kpa import KpaKnobs, KpaState, kpa_record, kpa_step, window_average


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
    assert replica_calculator(obs, HpaKnobs(target=100))[0] == expected


def test_docs_example_ceil_of_ratio_times_replicas():
    # The docs: 50 replicas at 90 against a target of 75 -> ceil(1.2 * 50) = 60.
    obs = Observation(now=0, current=50, samples=samples(50, 90))
    proposal, average, ratio, within, _ = replica_calculator(obs, HpaKnobs(target=75,
                                                                         max_replicas=100))
    assert (proposal, average, within) == (60, 90, False) and ratio == pytest.approx(1.2)


def test_per_direction_tolerance():
    knobs = HpaKnobs(target=100, tolerance_up=0.05, max_replicas=50)
    assert replica_calculator(Observation(0, 20, samples(20, 106)), knobs)[0] == 22
    assert replica_calculator(Observation(0, 20, samples(20, 94)), knobs)[0] == 20


def test_base_is_the_replicas_with_a_sample():
    # 10 asked, 8 reporting 50 against 100, 2 pending: a scale-down ignores the pending.
    obs = Observation(now=0, current=10, samples=samples(8, 50), pending=2)
    assert replica_calculator(obs, HpaKnobs(target=100))[0] == 4


def test_missing_replicas_count_as_target_on_scale_down():
    # 3 of 4 report 20 against 50; the missing one counts as 50: (60+50)/4 = 27.5 -> ceil(2.2)
    obs = Observation(now=0, current=4, samples=samples(3, 20), missing=1)
    assert replica_calculator(obs, HpaKnobs(target=50))[0] == 3


def test_missing_replica_that_flips_the_direction_means_no_change():
    # 3 report 120 against 100; the missing one as 0: 90 -> ratio 0.9, the direction flips.
    obs = Observation(now=0, current=4, samples=samples(3, 120), missing=1)
    assert replica_calculator(obs, HpaKnobs(target=100))[0] == 4


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


def test_a_rise_shorter_than_one_period_is_not_judged():
    offered = [100] * 30 + [300] * 2 + [100] * 30
    assert _autoscaled_run(offered, [(0, 1)])()["rises"] == []
    offered = [100] * 30 + [300] * 10 + [100] * 30
    assert len(_autoscaled_run(offered, [(0, 1)])()["rises"]) == 1


def test_time_to_scale_unknown_without_a_capacity():
    from loadtest.analysis.thresholds import Thresholds
    from loadtest.analysis.verdict import autoscaling_checks
    offered = [100] * 30 + [400] * 30
    cpu = {"policy": "hpa", "metric": "cpu", "target": 60.0, "min_replicas": 1,
           "max_replicas": 4, "period": 3.0, "tolerance": 0.1}
    # p95 is never within a 1 ms SLO: no capacity can be measured, so no rise is known
    a = _autoscaled_run(offered, [(0, 1)], plan=cpu)(slo_ms=1.0)
    assert a["capacity_per_replica"] is None and a["max_time_to_scale_s"] is None
    (check,) = [c for c in autoscaling_checks(a, Thresholds(max_time_to_scale_s=30))
                if c.name == "time_to_scale_s"]
    assert check.passed is None and "capacity" in check.reason


def test_a_rise_unmet_at_the_end_fails_only_once_it_outlasted_the_limit():
    from loadtest.analysis.thresholds import Thresholds
    from loadtest.analysis.verdict import autoscaling_checks

    def check(offered):
        a = _autoscaled_run(offered, [(0, 1)])()
        return next(c for c in autoscaling_checks(a, Thresholds(max_time_to_scale_s=30))
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
