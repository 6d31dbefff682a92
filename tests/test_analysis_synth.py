"""The analyzer against synthetic histories: it finds exactly what was injected."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loadtest.analysis.consistency import OrderChecker
from loadtest.analysis.load import load_run
from loadtest.analysis.summary import analyse
from loadtest.analysis.thresholds import Thresholds
from loadtest.contract.synth import Anomalies, SynthSpec, generate, write
from loadtest.contract.synth import main as synth_main


def run_synth(tmp_path, requests=20_000, levels=(1, 2, 4), balance="roundrobin", seed=3,
              **anomalies):
    spec = SynthSpec(requests, list(levels), balance=balance, seed=seed,
                     anomalies=Anomalies(**anomalies))
    meta, cols = generate(spec)
    out = write(tmp_path / "run", meta, cols, chunk=7_000)
    return analyse(load_run(out), Thresholds()).summary


@pytest.mark.parametrize("flag,warned", [("--scale-levels", False), ("--levels", True)])
def test_synth_takes_the_harness_name_for_levels(flag, warned, tmp_path, capsys):
    """--scale-levels, as the harness calls the replica counts; --levels, its old name,
    still works for one release and says the new one on stderr."""
    assert synth_main(["--requests", "600", "--out", str(tmp_path / "r"), flag, "1,3"]) == 0
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert [stage["level"] for stage in meta["plan"]["stages"]] == [1, 3]
    err = capsys.readouterr().err.splitlines()
    assert err == (["python -m loadtest.contract.synth: warning: --levels is now "
                    "--scale-levels (--levels still works, for one release)"] if warned else [])


def rounded(value):
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def failed(summary) -> dict:
    return {c["name"]: c["value"] for c in summary["checks"] if c["passed"] is False}


@pytest.mark.parametrize("levels,seed", [((1, 2, 4), 1), ((3, 1, 2), 2), ((2,), 3),
                                         ((1, 5, 2, 4), 4)])
def test_clean_history_passes_without_false_alarm(tmp_path, levels, seed):
    s = run_synth(tmp_path, levels=levels, seed=seed)
    assert s["verdict"] == "pass", failed(s)
    c = s["consistency"]
    assert (c["duplicates"], c["gaps"], c["lost"], c["order_violations"]) == (0, 0, 0, 0)
    for stage, level in zip(s["stages"], levels):
        assert len(stage["hostnames"]) == level and stage["uncovered"] == []
        assert stage["fairness"]["jain"] > 0.999


def test_duplicates_found_with_their_values(tmp_path):
    s = run_synth(tmp_path, duplicates=7)
    c = s["consistency"]
    assert c["duplicates"] == 7 and c["lost"] == 7  # a lost update loses the increment too
    assert c["order_violations"] == 0 and c["unexplained_gaps"] == 0
    assert len(c["examples"]["duplicates"]) == 7
    assert set(failed(s)) == {"counter_duplicates", "counter_lost_increments"}


def test_order_violations_found_exactly(tmp_path):
    s = run_synth(tmp_path, order_violations=5)
    assert s["consistency"]["order_violations"] == 5
    assert set(failed(s)) == {"counter_real_time_order"}


def test_lost_increments_found_exactly(tmp_path):
    s = run_synth(tmp_path, lost=4)
    assert s["consistency"]["lost"] == 4
    # the final counter is then also below values already returned
    assert set(failed(s)) == {"counter_lost_increments", "counter_final_below_returned"}


def test_unknown_outcomes_explain_gaps_and_pass(tmp_path):
    s = run_synth(tmp_path, unknown_applied=6, unknown_not_applied=4)
    c = s["consistency"]
    assert (c["unknown"], c["gaps"], c["unexplained_gaps"]) == (10, 6, 0)
    assert c["lost"] == 0 and c["unexplained_increments"] == 0
    assert s["verdict"] == "pass", failed(s)  # 10 errors in 20k stay under 1 %


def test_replica_serving_after_removal(tmp_path):
    s = run_synth(tmp_path, levels=(3, 1), late_serving=6)
    removed = [r for st in s["stages"] for r in st["changes"]["removed"]]
    assert sum(r["served_after_removal"] for r in removed) == 6
    assert set(failed(s)) == {"served_after_removal"}


def test_skewed_balancing_fails_fairness(tmp_path):
    s = run_synth(tmp_path, balance="skewed")
    assert set(failed(s)) == {"fairness_jain"}
    four = s["stages"][2]
    assert four["fairness"]["max_mean"] > 1.3 and four["fairness"]["chi2_p"] < 1e-6


def test_starved_replica_is_uncovered(tmp_path):
    s = run_synth(tmp_path, balance="starved", levels=(1, 3))
    assert s["stages"][1]["uncovered"] == ["hello-3"]
    assert "coverage_uncovered_replicas" in failed(s)


def test_replica_joining_mid_stage_is_not_starved(tmp_path):
    s = run_synth(tmp_path, levels=(1, 2))
    stage = s["stages"][1]
    added = stage["changes"]["added"]
    assert [a["hostname"] for a in added] == ["hello-2"]
    assert 0 <= added[0]["first_request_delay_s"] < 0.1
    assert stage["uncovered"] == []


def test_scaling_efficiency_against_first_level(tmp_path):
    s = run_synth(tmp_path, levels=(1, 2))
    eff = s["stages"][1]["scaling_efficiency"]
    ratio = s["stages"][1]["rps"] / (2 * s["stages"][0]["rps"])
    assert eff == pytest.approx(ratio)


def test_order_check_brute_force_agreement():
    """The O(n log n) check agrees with the O(n^2) definition on random histories."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = 60
        start = rng.uniform(0, 1, n)
        end = start + rng.uniform(0, 0.2, n)
        values = rng.integers(0, 40, n)
        fast = OrderChecker().feed(start, end, values)
        slow = np.array([any(end[a] < start[b] and values[a] >= values[b] for a in range(n))
                         for b in range(n)])
        assert (fast == slow).all()


def test_windowed_analysis_equals_one_window(tmp_path):
    """Streaming in small windows gives exactly what one big window gives."""
    spec = SynthSpec(30_000, [2, 4, 1], seed=9,
                     anomalies=Anomalies(duplicates=4, order_violations=3, unknown_applied=2))
    meta, cols = generate(spec)
    out = write(tmp_path / "run", meta, cols, chunk=2_000)
    whole = analyse(load_run(out, rows_per_window=10_000_000), Thresholds()).summary
    small = analyse(load_run(out, rows_per_window=1_500), Thresholds()).summary
    for s in (whole, small):
        s.pop("generated_at")
    assert rounded(small) == rounded(whole)  # sums may differ in the last bit
    assert whole["consistency"]["order_violations"] == 3


def test_exact_percentiles_match_numpy(tmp_path):
    s = run_synth(tmp_path, levels=(2,))
    frame = load_run(tmp_path / "run").frame()
    stage = s["stages"][0]
    lat = frame[frame.t_start >= stage["t_ready"]]["latency_ms"].to_numpy()
    for p in (50, 90, 95, 99):
        assert stage["latency_ms"][f"p{p}"] == pytest.approx(np.percentile(lat, p), abs=1e-9)
    assert stage["latency_ms"]["max"] == lat.max()


def test_order_checker_fed_in_chunks_equals_one_shot():
    rng = np.random.default_rng(5)
    n = 5000
    start = np.sort(rng.uniform(0, 10, n))
    end = start + rng.exponential(0.05, n)
    values = np.argsort(np.argsort(start + rng.uniform(0, 0.04, n)))
    one = OrderChecker(0.001).feed(start, end, values)
    checker = OrderChecker(0.001)
    chunks = np.array_split(np.arange(n), 17)
    fed = np.concatenate([checker.feed(start[c], end[c], values[c]) for c in chunks])
    assert (one == fed).all() and one.sum() > 0


def test_findings_say_it_in_plain_words(tmp_path):
    from loadtest.analysis.view import findings

    clean = findings(run_synth(tmp_path / "a", levels=(1, 2)))
    assert any("spread evenly" in line for line in clean)
    assert any("stayed consistent" in line for line in clean)
    broken = findings(run_synth(tmp_path / "b", levels=(1, 3), balance="starved", duplicates=2))
    assert any("got no requests: hello-3" in line for line in broken)
    assert any("NOT consistent: 2 duplicate values" in line for line in broken)


def test_requests_cut_at_scale_changes_fail_naming_each_change(tmp_path):
    """25 balancer 502/503s inside the two scale changes of a clean history: the steady
    segments are clean, so only the transition check can see them, and it must."""
    s = run_synth(tmp_path, levels=(1, 3, 2), transition_errors=25)
    assert s["verdict"] == "fail"
    assert set(failed(s)) == {"transition_errors"}
    check = next(c for c in s["checks"] if c["name"] == "transition_errors")
    changes = check["evidence"]["changes"]
    assert [c["change"] for c in changes] == ["1 → 3", "3 → 2"]
    assert sum(c["cut"] for c in changes) == 25
    assert all(c["by"] == "plan" for c in changes)
    for change in changes:
        if change["cut"]:
            assert change["status"] == "fail"
            assert set(change["errors_by_kind"]) <= {"http_502", "http_503"}
            assert change["errors_by_replica"] == {"the balancer itself": change["errors"]}
            assert 0 <= change["first_cut_after_s"] <= change["last_cut_after_s"] < 1.5
    assert "1 → 3" in check["reason"] or "3 → 2" in check["reason"]
    c = s["consistency"]  # the 503s never reached the app, the 502s may have: no anomaly
    assert c["lost"] == 0 and c["unexplained_gaps"] == 0


def test_transition_threshold_can_allow_a_stack_known_to_cut(tmp_path):
    spec = SynthSpec(20_000, [1, 3, 2], seed=3, anomalies=Anomalies(transition_errors=4))
    meta, cols = generate(spec)
    run = load_run(write(tmp_path / "run", meta, cols))
    loose = analyse(run, Thresholds(max_transition_error_rate=0.5)).summary
    assert loose["verdict"] == "pass", failed(loose)
    off = analyse(run, Thresholds(max_transition_error_rate=None)).summary
    check = next(c for c in off["checks"] if c["name"] == "transition_errors")
    assert check["status"] == "not applicable" and off["verdict"] == "pass"


def test_the_app_s_own_4xx_during_a_scale_change_are_not_cut(tmp_path):
    """Seven 409s the app itself answered (a replica named, no counter value) inside the
    scale changes: the app answering, not the change cutting. Counted apart; the check
    passes and the sentence says no request was cut and the 7 answers apart."""
    from loadtest.analysis.view import findings
    from loadtest.contract.synth import _in_transitions

    spec = SynthSpec(20_000, [1, 3, 2], seed=3)
    meta, cols = generate(spec)
    inside = np.flatnonzero(_in_transitions(meta["stack_events"], cols["t_start"]))
    chosen = inside[:: max(1, len(inside) // 7)][:7]
    cols["status"][chosen] = 409
    cols["counter"][chosen] = None
    cols["error"][chosen] = "HTTP 409"
    s = analyse(load_run(write(tmp_path / "run", meta, cols)), Thresholds()).summary
    check = next(c for c in s["checks"] if c["name"] == "transition_errors")
    assert check["status"] == "pass", check["reason"]
    changes = check["evidence"]["changes"]
    assert sum(c["cut"] for c in changes) == 0 and sum(c["app_4xx"] for c in changes) == 7
    assert sum(c["errors"] for c in changes) == 7  # errors still, for the error counts
    line = next(x for x in findings(s) if "scale change" in x and "cut" in x)
    assert line.startswith("No request was cut at any of the 2 scale changes")
    assert "the app answered 7 of them 4xx itself" in line


def test_a_relaxed_transition_threshold_still_says_what_was_cut(tmp_path):
    """Four balancer errors let through by a loose threshold: the check passes, and the
    sentence counts the 4 rather than saying no request was cut."""
    from loadtest.analysis.view import findings

    spec = SynthSpec(20_000, [1, 3, 2], seed=3, anomalies=Anomalies(transition_errors=4))
    meta, cols = generate(spec)
    s = analyse(load_run(write(tmp_path / "run", meta, cols)),
                Thresholds(max_transition_error_rate=0.5)).summary
    check = next(c for c in s["checks"] if c["name"] == "transition_errors")
    assert check["status"] == "pass"
    line = next(x for x in findings(s) if "scale change" in x and "cut" in x)
    assert line.startswith("4 of ") and "requests were cut at the 2 scale change(s)" in line
    assert "No request was cut" not in " ".join(findings(s))


def test_a_scale_change_at_the_very_end_is_not_checked(tmp_path):
    spec = SynthSpec(20_000, [1, 2], seed=5)
    meta, cols = generate(spec)
    t_max = float(cols["t_end"].max())
    # One more change asked 0.2 s before the records end: never seen settle.
    meta["stack_events"] += [
        {"t": t_max - 0.2, "event": "scale_asked", "level": 3, "previous": 2, "by": "plan"},
        {"t": t_max - 0.1, "event": "scale_ready", "level": 3}]
    s = analyse(load_run(write(tmp_path / "run", meta, cols)), Thresholds()).summary
    check = next(c for c in s["checks"] if c["name"] == "transition_errors")
    assert check["status"] == "not checked", check
    assert "2 → 3" in check["reason"] and "margin" in check["reason"]
    assert s["verdict"] == "inconclusive"


def test_hidden_attempts_are_unknown_outcomes_that_explain_their_gaps(tmp_path):
    """A client's silent resend whose first attempt incremented the counter leaves a gap
    that only that attempt explains: counted, the history is consistent."""
    s = run_synth(tmp_path, hidden_attempts=6)
    c = s["consistency"]
    assert c["hidden_attempts"] == 6 and c["attempts_counted"] == 20_000
    assert (c["gaps"], c["unexplained_gaps"], c["unexplained_increments"]) == (6, 0, 0)
    assert s["verdict"] == "pass", failed(s)


def test_hidden_attempts_unseen_leave_unexplained_gaps(tmp_path):
    """The same history read without the attempt counts (an older record, or a plain
    FastHttpUser): the gaps are unexplained, as they were before attempts were counted."""
    import pyarrow.parquet as pq

    spec = SynthSpec(20_000, [1, 2, 4], seed=3, anomalies=Anomalies(hidden_attempts=6))
    meta, cols = generate(spec)
    out = write(tmp_path / "run", meta, cols)
    for part in (out / "requests").glob("*.parquet"):
        pq.write_table(pq.read_table(part).drop(["attempts"]), part)
    s = analyse(load_run(out), Thresholds()).summary
    assert s["consistency"]["unexplained_gaps"] == 6
    assert {"counter_gaps", "counter_unexplained_increments"} <= set(failed(s))
