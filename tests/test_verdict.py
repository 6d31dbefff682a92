"""The verdict's truth, on synthetic histories and hand-made records: no false alarm, no
blind pass. Each test injects exactly one situation and asserts the verdict it deserves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtest.analysis.checks import accept_unchecked, compose, judged
from loadtest.analysis.consistency import CounterChecker, explained_gaps
from loadtest.analysis.findings import Findings
from loadtest.analysis.load import load_run
from loadtest.analysis.outcomes import classify, never_reached
from loadtest.analysis.passes import Chunk
from loadtest.analysis.summary import Settings, analyse
from loadtest.analysis.thresholds import Thresholds
from loadtest.contract.records import SCHEMA, Record
from loadtest.contract.synth import SynthSpec, generate, write
from tests.conftest import ROOT


def synth(tmp_path, requests=20_000, levels=(1, 2, 4), seed=3, **mutate):
    meta, cols = generate(SynthSpec(requests, list(levels), seed=seed))
    for key, value in mutate.items():
        meta[key] = value
    return write(tmp_path / "run", meta, cols, chunk=7_000)


def checks_of(summary) -> dict:
    return {c["name"]: c for c in summary["checks"]}


# -- composing, as Jepsen does ----------------------------------------------------------

def test_an_unknown_never_reads_as_valid():
    assert compose([judged("a", True), judged("b", True)]) == "pass"
    assert compose([judged("a", True), judged("b", None)]) == "inconclusive"
    assert compose([judged("a", False), judged("b", None)]) == "fail"
    accepted = [judged("a", True), judged("b", None)]
    assert accept_unchecked(accepted, {"b", "nope"}) == ["nope"]
    assert compose(accepted) == "pass" and accepted[1].status == "not applicable"
    # accepting a check that *was* made changes nothing
    made = [judged("a", False)]
    accept_unchecked(made, {"a"})
    assert compose(made) == "fail"


# -- the run itself ------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["interrupted", "failed", "running"])
def test_a_run_that_did_not_complete_is_inconclusive(tmp_path, status):
    s = analyse(load_run(synth(tmp_path, status=status)), Thresholds()).summary
    assert s["verdict"] == "inconclusive"
    assert checks_of(s)["run_completed"]["status"] == "not checked"


def test_a_stage_that_never_ran_is_inconclusive(tmp_path):
    meta, cols = generate(SynthSpec(20_000, [1, 2], seed=4))
    meta["plan"]["stages"].append({"index": 2, "level": 4})
    out = write(tmp_path / "run", meta, cols)
    s = analyse(load_run(out), Thresholds()).summary
    assert s["verdict"] == "inconclusive"
    assert s["run"]["stages_missing"] == [{"index": 2, "level": 4, "why": "never started"}]


# -- gaps, in real time ----------------------------------------------------------------

def test_explained_gaps_respect_real_time():
    # two missing values, the second request ending at 10.0; an unknown that started
    # later (11.0) cannot have produced them; one that started at 9.0 can explain one.
    assert explained_gaps([(2, 10.0)], np.array([11.0])) == 0
    assert explained_gaps([(2, 10.0)], np.array([9.0, 11.0])) == 1
    # nested eligibility: the early deadline takes the early unknown first
    assert explained_gaps([(1, 5.0), (1, 20.0)], np.array([4.0, 19.0])) == 2
    assert explained_gaps([(1, 5.0), (1, 20.0)], np.array([19.0, 19.5])) == 1


def _records(rows: list[dict]) -> pd.DataFrame:
    base = {f: None for f in Record._fields}
    base.update(status=200, stage=0, scale_level=1, user=1, worker="w", method="GET", name="/",
                bytes=10, latency_ms=1.0, hostname="hello-1")
    frame = pd.DataFrame([{**base, **r} for r in rows])
    return frame.sort_values("t_start", ignore_index=True)


def _check(df: pd.DataFrame, before: int, after: int) -> dict:
    chunk = Chunk.of(df)
    checker = CounterChecker(before, after, df["counter"].min(), df["counter"].max(), 0.0)
    checker.add(chunk, chunk.ok, chunk.fail, chunk.unknown)
    checker.prepare()
    checker.collect(chunk, chunk.ok)
    return checker.result()


def test_a_late_unknown_does_not_explain_an_earlier_gap():
    rows = [
        {"t_start": 1.0, "t_end": 1.1, "counter": 1, "user": 1},
        {"t_start": 2.0, "t_end": 2.1, "counter": 3, "user": 2},   # 2 is missing
        {"t_start": 5.0, "t_end": 5.6, "counter": None, "status": 0, "user": 3,
         "hostname": None, "error": "ReadTimeout: timed out", "counter_error": "no response"},
    ]
    c = _check(_records(rows), before=0, after=4)
    assert (c["gaps"], c["unexplained_gaps"]) == (1, 1)
    rows[2]["t_start"] = 1.5  # now it could have taken value 2 before value 3 was returned
    c = _check(_records(rows), before=0, after=4)
    assert (c["gaps"], c["unexplained_gaps"]) == (1, 0)


def test_final_counter_below_a_value_returned_fails():
    rows = [{"t_start": float(i), "t_end": i + 0.1, "counter": i + 1, "user": 1}
            for i in range(5)]
    c = _check(_records(rows), before=0, after=3)
    assert c["final_below_returned"] == 2 and c["max_returned"] == 5


def test_an_app_error_without_a_value_is_an_unknown_outcome():
    rows = [{"t_start": 1.0, "t_end": 1.1, "counter": None, "user": 1,
             "counter_error": "TimeoutError: Timeout reading from socket"},
            {"t_start": 2.0, "t_end": 2.1, "counter": None, "status": 0, "hostname": None,
             "error": "ConnectionRefusedError: [Errno 111] Connection refused", "user": 2}]
    ok, fail, unknown = classify(_records(rows))
    assert list(unknown) == [True, False] and list(fail) == [False, True]


def test_an_app_without_a_counter_that_answers_4xx_refused_the_request():
    """No counter: a 409 the app answered (a replica named) is a definite answer that did
    nothing (fail), not an unknown outcome; the balancer's own 503 never reached it; a
    502 may have."""
    rows = [{"t_start": float(i), "t_end": i + 0.1, "counter": None, "user": 1,
             "status": status, "hostname": host}
            for i, (status, host) in enumerate([(200, "h1"), (409, "h1"), (503, None),
                                                (502, None), (0, None)])]
    df = _records(rows)
    ok, fail, unknown = classify(df, counted=False)
    assert list(ok) == [True, False, False, False, False]
    assert list(fail) == [False, True, True, False, False]
    assert list(unknown) == [False, False, False, True, True]
    assert list(never_reached(df)) == [False, False, True, False, False]


# -- unknown outcomes count against a threshold of their own -------------------------------

def test_unknown_rate_threshold(tmp_path):
    meta, cols = generate(SynthSpec(20_000, [2], seed=5))
    rng = np.random.default_rng(1)
    hit = rng.choice(len(cols["counter"]), 400, replace=False)  # 2 %: above the default 1 %
    cols["counter"][hit] = None
    cols["counter_error"][hit] = "TimeoutError: Timeout reading from socket"
    meta["counter"]["after"] = meta["counter"]["after"]  # those INCRs happened
    out = write(tmp_path / "run", meta, cols)
    s = analyse(load_run(out), Thresholds()).summary
    checks = checks_of(s)
    assert checks["unknown_rate"]["status"] == "fail"
    assert checks["error_rate"]["status"] == "pass"   # a 200 without a value is not an error
    assert checks["counter_gaps"]["status"] == "pass"  # each unknown may have taken its value
    relaxed = analyse(load_run(out), Thresholds(max_unknown_rate=0.05)).summary
    assert checks_of(relaxed)["unknown_rate"]["status"] == "pass"


# -- fairness that fits the policy -------------------------------------------------------------

def _slow_replica_history(tmp_path, policy_counts: str):
    """2 replicas, hello-2 twice as slow; a leastconn balancer gives it about half the
    requests (equal busy time), round robin the same number (unequal busy time)."""
    meta, cols = generate(SynthSpec(20_000, [2], seed=6))
    slow = cols["hostname"] == "hello-2"
    if policy_counts == "leastconn":
        # a third of hello-2's requests go to hello-1 instead: 2:1 in counts, 1:1 in busy time
        idx = np.flatnonzero(slow)[::3]
        cols["hostname"][idx] = "hello-1"
        slow = cols["hostname"] == "hello-2"
    cols["latency_ms"] = np.where(slow, cols["latency_ms"] * 2, cols["latency_ms"])
    cols["latency_ms"] = np.where(~slow, cols["latency_ms"] * 1.0, cols["latency_ms"])
    return write(tmp_path / policy_counts, meta, cols)


def test_leastconn_is_judged_on_busy_time_not_on_counts(tmp_path):
    lc = _slow_replica_history(tmp_path, "leastconn")
    by_count = analyse(load_run(lc), Thresholds()).summary
    assert checks_of(by_count)["fairness_jain"]["status"] == "fail"
    by_busy = analyse(load_run(lc), Thresholds(), settings=Settings(balance="leastconn")).summary
    seg = by_busy["segments"][0]
    assert seg["judged_on"] == "busy time"
    busy = [r["busy_s"] for r in seg["per_replica"].values()]
    assert max(busy) / min(busy) < 1.2
    assert checks_of(by_busy)["fairness_jain"]["status"] == "pass"


def test_weights_are_judged_against_their_shares(tmp_path):
    meta, cols = generate(SynthSpec(20_000, [2], seed=7))
    # 3:1 split
    idx = np.flatnonzero(cols["hostname"] == "hello-2")[::2]
    cols["hostname"][idx] = "hello-1"
    out = write(tmp_path / "w", meta, cols)
    even = analyse(load_run(out), Thresholds()).summary
    assert checks_of(even)["fairness_jain"]["status"] == "fail"
    weighted = analyse(load_run(out), Thresholds(), settings=Settings(
        balance="weights", weights={"hello-1": 3, "hello-2": 1})).summary
    assert checks_of(weighted)["fairness_jain"]["status"] == "pass"
    assert set(weighted["segments"][0]["per_replica"]["hello-1"]) >= {
        "requests", "errors", "busy_s", "p50_ms", "p99_ms"}


# -- external stacks ---------------------------------------------------------------------------

@pytest.mark.process
def test_external_stack_expected_replicas(tmp_path):
    meta, cols = generate(SynthSpec(20_000, [1], seed=8))
    meta["stack"] = {"backend": "external", "controlled": False, "expect_replicas": 3}
    meta["stack_events"] = []
    meta["stages"] = [{**meta["stages"][0], "level": 0}]
    meta["counter"] = {"before": None, "after": None}
    out = write(tmp_path / "ext", meta, cols)
    s = analyse(load_run(out), Thresholds(), settings=Settings(allow_unchecked={
        "counter_unexpected", "counter_lost_increments", "counter_unexplained_increments",
        "counter_final_below_returned"})).summary
    checks = checks_of(s)
    assert checks["replicas_expected"]["status"] == "fail"
    assert checks["replicas_expected"]["value"] == 1
    assert s["verdict"] == "fail"
    proc = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(out), "--no-report"],
                          capture_output=True, text=True, timeout=120)
    assert "×0" not in proc.stdout and "0 replicas" not in proc.stdout
    assert "FAIL — 1 of" in proc.stdout and "checks failed: replicas_expected" in proc.stdout


# -- malformed input: one line, exit 2; or --skip-bad-parts, at best inconclusive ---------

def _analyze(*args):
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.process
def test_wrong_column_types_in_a_part(tmp_path):
    run = synth(tmp_path, requests=20_000)  # three parts: one goes bad
    part = sorted((run / "requests").glob("*.parquet"))[0]
    table = pq.read_table(part)
    bad = table.set_column(table.schema.get_field_index("status"), "status",
                           pa.array(["200"] * table.num_rows))
    pq.write_table(bad, part)
    proc = _analyze(run, "--no-report")
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("  [")]
    assert proc.returncode == 2 and len(lines) == 1
    assert part.name in lines[0] and "status" in lines[0] and "Traceback" not in proc.stderr
    proc = _analyze(run, "--no-report", "--skip-bad-parts")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"skipped {part.name}" in proc.stderr
    checks = checks_of(json.loads((run / "summary.json").read_text()))
    assert checks["records_readable"]["status"] == "not checked"


@pytest.mark.parametrize("mutation,message", [
    ({"stages": [{"index": 0, "level": "two", "t_start": 1.0}]}, "stages[0].level"),
    ({"counter": {"before": "12", "after": 30}}, "counter.before"),
    ({"stack_events": [{"event": "scale_asked"}]}, "stack_events[0]"),
    ({"totals": {"recorded": "many"}}, "totals.recorded"),
    ({"stages": {"0": {}}}, "stages is not a list"),
])
@pytest.mark.process
def test_wrong_types_in_run_json(tmp_path, mutation, message):
    run = synth(tmp_path, requests=6000)
    meta = json.loads((run / "run.json").read_text())
    meta.update(mutation)
    (run / "run.json").write_text(json.dumps(meta))
    proc = _analyze(run, "--no-report")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1]


@pytest.mark.process
def test_a_part_without_the_newer_column_still_reads(tmp_path):
    """Records written before t_intended and attempts existed: read as nulls."""
    run = synth(tmp_path, requests=6000)
    for part in (run / "requests").glob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.drop(["t_intended", "attempts"]), part)
    assert _analyze(run, "--no-report").returncode == 0


def test_schema_and_record_agree():
    assert list(Record._fields) == SCHEMA.names


# -- blind spots found by a second reading ------------------------------------------------

def test_a_lost_record_file_is_not_a_pass(tmp_path):
    run = synth(tmp_path, options={"scale_levels": [1, 2, 4], "counter_field": "none"})
    parts = sorted((run / "requests").glob("*.parquet"))
    assert len(parts) >= 2
    parts[-1].unlink()
    s = analyse(load_run(run), Thresholds()).summary
    check = checks_of(s)["records_complete"]
    assert check["status"] == "not checked" and "missing" in check["reason"]
    assert s["verdict"] == "inconclusive"


def test_a_stray_replica_answering_fails(tmp_path):
    run = synth(tmp_path)
    df = pd.read_parquet(run / "requests")
    df.loc[df.index % 3 == 0, "hostname"] = "stray-9"
    for part in (run / "requests").glob("*.parquet"):
        part.unlink()
    pq.write_table(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False),
                   run / "requests" / "part-0.parquet")
    s = analyse(load_run(run), Thresholds()).summary
    check = checks_of(s)["unexpected_replicas"]
    assert check["status"] == "fail" and check["evidence"]["replicas"] == ["stray-9"]


def test_a_planned_level_never_judged_is_inconclusive(tmp_path):
    clean = analyse(load_run(synth(tmp_path / "a", levels=(1, 2))), Thresholds()).summary
    assert checks_of(clean)["levels_judged"]["status"] == "pass"
    s = analyse(load_run(synth(tmp_path / "b", levels=(1, 2))),
                Thresholds(min_segment_s=1e6)).summary
    check = checks_of(s)["levels_judged"]
    assert check["status"] == "not checked" and check["evidence"]["unjudged"] == [1, 2]
    assert s["verdict"] == "inconclusive"


def test_no_hostname_anywhere_is_not_checked_not_unfair(tmp_path):
    run = synth(tmp_path, levels=(2,))
    df = pd.read_parquet(run / "requests")
    df["hostname"] = None
    for part in (run / "requests").glob("*.parquet"):
        part.unlink()
    pq.write_table(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False),
                   run / "requests" / "part-0.parquet")
    checks = checks_of(analyse(load_run(run), Thresholds()).summary)
    assert checks["fairness_jain"]["status"] == "not checked"
    assert checks["coverage_uncovered_replicas"]["status"] == "not checked"


def test_a_baseline_with_no_level_in_common_compares_nothing(tmp_path):
    base = analyse(load_run(synth(tmp_path / "a", levels=(1, 2))), Thresholds()).summary
    s = analyse(load_run(synth(tmp_path / "b", levels=(3, 4))), Thresholds(),
                baseline=base).summary
    assert checks_of(s)["regression"]["status"] == "not checked"
    assert s["verdict"] == "inconclusive"


def _fault_check(observed_after_s, recovery_s=None):
    from loadtest.analysis.verdict import fault_checks
    fault = {"spec": "5s:pause-redis:2s", "applied": 5.0, "recovery_s": recovery_s,
             "error_rate": 0.5, "observed_after_s": observed_after_s}
    return {c.name: c for c in fault_checks(Findings(faults=[fault]),
                                            Thresholds())}["fault_recovery_s"]


def test_a_fault_at_the_very_end_is_not_a_failed_recovery():
    assert _fault_check(0.3).status == "not checked"
    assert _fault_check(120.0).status == "fail"
    assert _fault_check(120.0, recovery_s=2.0).status == "pass"


def test_requests_in_flight_when_a_fault_struck_are_the_fault_s(tmp_path):
    """Requests that started just before a fault and failed because of it are counted
    with the fault, not against the steady stretch before it."""
    run = synth(tmp_path, levels=(2,))
    meta = json.loads((run / "run.json").read_text())
    df = pd.read_parquet(run / "requests")
    t_fault = float(df.t_start.quantile(0.5))
    hit = (df.t_start > t_fault - 0.8) & (df.t_start < t_fault)
    assert hit.sum() > 0.02 * (df.t_start < t_fault).sum()  # over max_error_rate
    df.loc[hit, ["status", "counter"]] = [0, None]
    df.loc[hit, "error"] = "timed out"
    df.loc[hit, "counter_error"] = "no response"
    df.loc[hit, "t_end"] = t_fault + 0.5
    meta["stack_events"] += [
        {"t": t_fault - 0.01, "event": "fault_asked", "fault": 0, "kind": "pause-redis",
         "spec": "9s:pause-redis:0.5s"},
        {"t": t_fault, "event": "fault_applied", "fault": 0, "kind": "pause-redis"},
        {"t": t_fault + 0.5, "event": "fault_ended", "fault": 0, "kind": "pause-redis"}]
    meta["stack_events"].sort(key=lambda e: e["t"])
    meta["plan"]["faults"] = ["9s:pause-redis:0.5s"]
    (run / "run.json").write_text(json.dumps(meta))
    for part in (run / "requests").glob("*.parquet"):
        part.unlink()
    pq.write_table(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False),
                   run / "requests" / "part-0.parquet")
    s = analyse(load_run(run), Thresholds(max_recovery_s=None)).summary
    checks = checks_of(s)
    assert checks["error_rate"]["status"] == "pass", checks["error_rate"]
    assert checks["unknown_rate"]["status"] == "pass"
    assert s["faults"][0]["errors"] == int(hit.sum())


# -- thresholds and input that must be refused, not judged -----------------------------

@pytest.mark.parametrize("cli, words", [
    ({"max_error_rate": "off"}, "cannot be turned off"),
    ({"min_jain": "5"}, "between 0 and 1"),
    ({"max_error_rate": "inf"}, "finite"),
    ({"max_error_rate": True}, "a number, or off"),
])
def test_thresholds_refused_in_one_line(cli, words):
    from loadtest.analysis.thresholds import ThresholdError, resolve
    with pytest.raises(ThresholdError, match=words):
        resolve(cli, None)


def test_thresholds_that_may_be_off_can_be(tmp_path):
    from loadtest.analysis.thresholds import ThresholdError, resolve
    assert resolve({"max_recovery_s": "off"}, None).max_recovery_s is None
    with pytest.raises(ThresholdError, match="no such file"):
        resolve({}, tmp_path / "nope.toml", required=True)
    assert resolve({}, tmp_path / "nope.toml").max_error_rate == 0.01  # the default file


def test_records_with_times_that_are_not_numbers_are_bad_input(tmp_path):
    from loadtest.analysis.load import AnalysisInputError
    run = synth(tmp_path)
    df = pd.read_parquet(run / "requests")
    df.loc[df.index % 50 == 0, "t_start"] = np.nan
    for part in (run / "requests").glob("*.parquet"):
        part.unlink()
    pq.write_table(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False),
                   run / "requests" / "part-0.parquet")
    with pytest.raises(AnalysisInputError, match="not a finite number"):
        analyse(load_run(run, rows_per_window=5_000), Thresholds())
    with pytest.raises(AnalysisInputError, match="not a finite number"):
        analyse(load_run(run), Thresholds())


@pytest.mark.parametrize("mutate, words", [
    (lambda m: m["stages"][0].update(t_end=float("nan")), "stages[0].t_end"),
    (lambda m: m["plan"].update(stages={"a": 1}), "plan.stages"),
    (lambda m: m["plan"].update(autoscale=[1]), "plan.autoscale"),
    (lambda m: m["stack_events"][0].update(level="two"), "stack_events[0].level"),
])
@pytest.mark.process
def test_malformed_run_json_is_named(tmp_path, mutate, words):
    run = synth(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    mutate(meta)
    (run / "run.json").write_text(json.dumps(meta))
    proc = _analyze(str(run))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert words in proc.stderr and "not a run record" in proc.stderr


def test_requests_in_flight_across_a_redis_reset_belong_to_neither_history():
    """A replica frozen across a restart without persistence: its requests started in the
    old history and got values of the new one. Neither duplicates nor order violations:
    unknown outcomes on both sides."""
    from loadtest.analysis.consistency import EpochedCounter
    old = [{"t_start": i * 0.1, "t_end": i * 0.1 + 0.05, "counter": i + 1, "user": i % 3}
           for i in range(100)]                                   # 1..100, before t=10
    stuck = [{"t_start": 9.95, "t_end": 12.0 + i * 0.01, "counter": i + 1, "user": 7}
             for i in range(3)]                                   # new values 1..3
    new = [{"t_start": 12.1 + i * 0.1, "t_end": 12.15 + i * 0.1, "counter": i + 4,
            "user": i % 3} for i in range(50)]                    # 4..53
    df = _records(old + stuck + new)
    chunk = Chunk.of(df)
    checker = EpochedCounter(0, 53, [{"t": 10.0, "counter_before": 100, "counter_after": 0}],
                             df["counter"].min(), df["counter"].max(), 0.0)
    checker.add(chunk)
    checker.plan()
    checker.collect(chunk)
    c = checker.result()
    assert c["straddling_reset"] == 3 and c["unknown"] == 3 and c["ok"] == 150
    for key in ("duplicates", "order_violations", "user_violations", "unexplained_gaps",
                "lost", "unexplained_increments"):
        assert c[key] == 0, (key, c)


def test_a_checker_that_raises_is_not_checked_and_the_others_stand(tmp_path, monkeypatch):
    """Jepsen's check-safe: one broken checker is one check "not checked" with the
    exception as evidence, never an aborted analysis and never a pass."""
    from loadtest.analysis import checks

    def broken_checks(findings, thresholds):
        raise KeyError("no such finding")

    monkeypatch.setitem(checks.CHECKERS, "broken", broken_checks)
    s = analyse(load_run(synth(tmp_path)), Thresholds()).summary
    broken = checks_of(s)["broken"]
    assert broken["status"] == "not checked"
    assert "KeyError" in broken["evidence"]["exception"]
    assert s["verdict"] == "inconclusive"
    assert checks_of(s)["counter_duplicates"]["status"] == "pass"


def test_evidence_reads_as_text_not_json():
    from loadtest.analysis.templating import evidence_text

    evidence = {"changes": [{"change": "1 → 2", "by": "plan", "cut": 0}],
                "replicas": [f"hello-{i}" for i in range(1, 11)], "segment": None,
                "examples": [{"message": "key k: read 3 after write 4 was acknowledged"}]}
    text = evidence_text(evidence)
    assert text == ("changes: (change: 1 → 2, by: plan, cut: 0); replicas: hello-1, hello-2, "
                    "hello-3, hello-4, hello-5, hello-6, hello-7, hello-8 … and 2 more; "
                    "examples: key k: read 3 after write 4 was acknowledged")
    assert evidence_text({"n": 12345.678, "ok": True}) == "n: 12,346; ok: yes"
    assert len(evidence_text({"x": "y" * 1000}, limit=50)) == 50


# -- a run.json that says little, records that were lost -----------------------------

@pytest.mark.process
def test_an_empty_run_json_proves_nothing(tmp_path):
    """run.json = {}: nothing is known of the run, so no replica can be called a stray
    (it failed unexpected_replicas): inconclusive, never FAIL."""
    run = synth(tmp_path, requests=6000)
    (run / "run.json").write_text("{}")
    s = analyse(load_run(run), Thresholds()).summary
    check = checks_of(s)["unexpected_replicas"]
    assert check["status"] == "not checked" and "names no replica" in check["reason"]
    assert s["verdict"] == "inconclusive", [c["name"] for c in s["checks"]
                                            if c["status"] == "fail"]
    proc = _analyze(run, "--no-report")
    assert proc.returncode == 3, proc.stdout


@pytest.mark.process
def test_lost_records_are_counted_and_named(tmp_path):
    """Locust counted more than were recorded (a full disk): records_complete fails with the
    count lost in its evidence, and the verdict line says it."""
    from loadtest.analysis.view import verdict_line

    run = synth(tmp_path, requests=6000)
    meta = json.loads((run / "run.json").read_text())
    meta["totals"]["locust"] = meta["totals"]["recorded"] + 42_311
    (run / "run.json").write_text(json.dumps(meta))
    s = analyse(load_run(run), Thresholds()).summary
    check = checks_of(s)["records_complete"]
    assert check["status"] == "fail" and check["evidence"]["lost"] == 42_311
    locust = meta["totals"]["locust"]
    assert check["reason"] == f"42,311 of the {locust:,} requests Locust counted have no record"
    assert verdict_line(s) == f"verdict: FAIL — 42,311 of {locust:,} requests have no record"
    proc = _analyze(run, "--no-report", "--quiet")
    assert proc.returncode == 1 and proc.stdout.strip() == verdict_line(s)
