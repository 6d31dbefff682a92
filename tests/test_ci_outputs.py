"""The merge gate: JUnit and Markdown read as CI reads them, --compare, `scalecheck check`
on a real run, and the example CI files' own script.

JUnit is read with junitparser and Markdown with markdown-it-py (consumers, not our
code). Runs come from `python -m loadtest.contract.synth` and `analyze.py` as a user runs them;
`scalecheck check` starts real Locust and the embedded stack (under the shared lock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped
from markdown_it import MarkdownIt

from loadtest.analysis.markdown import MAX_FAULTS, STEP_SUMMARY_LIMIT, render_markdown
from tests.conftest import ROOT, free_port

EXAMPLES = ROOT / "examples" / "ci"
STATE_CHECKS = sorted(["register_linearizable", "session_monotonic_reads",
                       "session_monotonic_writes", "session_read_your_writes",
                       "session_writes_follow_reads", "sessions_honoured", "set_lost",
                       "set_stale", "set_unexpected", "add_counter_lost", "add_counter_extra",
                       "list_lost", "list_duplicated", "list_reordered", "list_stale"])


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env.update(extra)
    return env


def synth(out: Path, *args: str) -> Path:
    subprocess.run([sys.executable, "-m", "loadtest.contract.synth", "--out", str(out), *args],
                   check=True, cwd=ROOT, capture_output=True, timeout=300)
    return out


def analyze(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=env or _env())


def _edit_run(run: Path, change) -> None:
    meta = json.loads((run / "run.json").read_text())
    change(meta)
    (run / "run.json").write_text(json.dumps(meta))


def _junit_counts(path: Path) -> dict:
    xml = JUnitXml.fromfile(str(path))
    cases = [case for suite in xml for case in suite]
    kinds = {"passed": [], "failed": [], "not checked": [], "not applicable": []}
    for case in cases:
        results = case.result
        if any(isinstance(r, Failure) for r in results):
            kinds["failed"].append(case.name)
        elif any(isinstance(r, Error) for r in results):
            kinds["not checked"].append(case.name)
        elif any(isinstance(r, Skipped) for r in results):
            kinds["not applicable"].append(case.name)
        else:
            kinds["passed"].append(case.name)
    assert all(case.classname.startswith("scalecheck.") for case in cases)
    return {k: sorted(v) for k, v in kinds.items()}


def _statuses(run: Path) -> dict:
    checks = json.loads((run / "summary.json").read_text())["checks"]
    out = {"passed": [], "failed": [], "not checked": [], "not applicable": []}
    for c in checks:
        out[{"pass": "passed", "fail": "failed"}.get(c["status"], c["status"])].append(c["name"])
    return {k: sorted(v) for k, v in out.items()}


# -- JUnit -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A passing, a failing, an inconclusive and a no-counter run, analysed with JUnit
    and Markdown outputs."""
    base = tmp_path_factory.mktemp("ci")
    made = {"pass": synth(base / "pass", "--requests", "6000", "--scale-levels", "1,2"),
            "fail": synth(base / "fail", "--requests", "6000", "--scale-levels", "1,2",
                          "--duplicates", "3"),
            "inconclusive": synth(base / "inconclusive", "--requests", "6000",
                                  "--scale-levels", "1,2"),
            "nocounter": synth(base / "nocounter", "--requests", "6000", "--scale-levels", "1,2")}
    _edit_run(made["inconclusive"], lambda m: m.update(counter={"before": None, "after": None}))
    _edit_run(made["nocounter"], lambda m: m["options"].update(counter_field="none"))
    codes = {}
    for name, run in made.items():
        proc = analyze(run, "--no-report", "--junit", run / "junit.xml", "--markdown",
                       run / "summary.md")
        codes[name] = proc.returncode
        assert "Traceback" not in proc.stderr, proc.stderr
    assert codes == {"pass": 0, "fail": 1, "inconclusive": 3, "nocounter": 0}
    return made


def test_junit_passing_run_is_all_green(runs):
    counts = _junit_counts(runs["pass"] / "junit.xml")
    assert counts["failed"] == counts["not checked"] == []
    # The synthetic history records no state operations: the state checkers have nothing
    # to judge, which is "not applicable" (skipped), never a pass.
    assert counts["not applicable"] == STATE_CHECKS
    assert counts == _statuses(runs["pass"]) and len(counts["passed"]) >= 15


def test_junit_failing_run_names_the_failures(runs):
    counts = _junit_counts(runs["fail"] / "junit.xml")
    assert counts["failed"] == ["counter_duplicates", "counter_lost_increments"]
    assert counts["not checked"] == []
    assert counts == _statuses(runs["fail"])
    xml = JUnitXml.fromfile(str(runs["fail"] / "junit.xml"))
    assert (xml.tests, xml.failures, xml.errors) == (sum(map(len, counts.values())), 2, 0)
    case = next(c for s in xml for c in s if c.name == "counter_duplicates")
    failure = case.result[0]
    assert "against the threshold 0" in failure.message
    assert "evidence" in case.system_out and "threshold: 0" in case.system_out


def test_junit_not_checked_is_an_error_never_green(runs):
    counts = _junit_counts(runs["inconclusive"] / "junit.xml")
    assert counts["not checked"] == ["counter_final_below_returned", "counter_lost_increments",
                                     "counter_unexpected", "counter_unexplained_increments"]
    assert counts["failed"] == [] and counts == _statuses(runs["inconclusive"])
    xml = JUnitXml.fromfile(str(runs["inconclusive"] / "junit.xml"))
    assert xml.errors == 4 and xml.failures == 0
    case = next(c for s in xml for c in s if c.name == "counter_lost_increments")
    assert case.result[0].message.startswith("not checked: ")


def test_junit_not_applicable_is_skipped(runs):
    counts = _junit_counts(runs["nocounter"] / "junit.xml")
    counter = [n for n in counts["not applicable"] if n.startswith("counter_")]
    assert len(counter) == 8
    assert sorted(set(counts["not applicable"]) - set(counter)) == STATE_CHECKS
    assert counts["failed"] == counts["not checked"] == []


# -- Markdown ----------------------------------------------------------------------------

def _tokens(text: str):
    return MarkdownIt("commonmark").enable("table").parse(text)


def test_markdown_has_verdict_table_charts_and_the_evidence(runs):
    for name, verdict in (("pass", "PASS"), ("fail", "FAIL"), ("inconclusive", "INCONCLUSIVE")):
        text = (runs[name] / "summary.md").read_text()
        tokens = _tokens(text)
        headings = [tokens[i + 1].content for i, t in enumerate(tokens)
                    if t.type == "heading_open"]
        assert headings[0].startswith(("✅", "❌", "⚠️")) and verdict in headings[0]
        assert any(t.type == "table_open" for t in tokens)
        header = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "th_open"]
        assert header[:4] == ["replicas", "seconds", "requests", "req/s"]
        charts = [t.content for t in tokens if t.type == "fence" and t.info == "mermaid"]
        assert len(charts) == 2 and all(c.startswith("xychart-beta") for c in charts)
        assert all("line [" in c and "x-axis" in c for c in charts)
    fail = (runs["fail"] / "summary.md").read_text()
    assert "❌ Failed checks (2)" in fail and "<code>counter_duplicates</code>" in fail
    evidence = [t.content for t in _tokens(fail)
                if t.type == "inline" and "examples:" in t.content]
    assert evidence and not any("{" in e or "\\u" in e for e in evidence), evidence  # words
    unsure = (runs["inconclusive"] / "summary.md").read_text()
    assert "Not checked (4)" in unsure and "could not be read before and after" in unsure


def _big_run(path: Path) -> Path:
    """100 replicas and 50 faults, in the real format."""
    run = synth(path, "--requests", "150000", "--scale-levels", "1,100", "--users", "40")
    meta = json.loads((run / "run.json").read_text())
    t0 = min(s["t_start"] for s in meta["stages"])
    t1 = max(s["t_end"] for s in meta["stages"])
    for i in range(50):
        t = t0 + (t1 - t0) * (i + 0.5) / 50
        meta["stack_events"] += [
            {"t": t - 0.01, "event": "fault_asked", "fault": i, "kind": "pause-replica",
             "spec": f"{i}s:pause-replica:0.1s:hello-{i + 2}"},
            {"t": t, "event": "fault_applied", "fault": i, "kind": "pause-replica",
             "hostname": f"hello-{i + 2}"},
            {"t": t + 0.1, "event": "fault_ended", "fault": i, "kind": "pause-replica"}]
    meta["stack_events"].sort(key=lambda e: e["t"])
    meta["plan"]["faults"] = [f"{i}s:pause-replica:0.1s" for i in range(50)]
    (run / "run.json").write_text(json.dumps(meta))
    return run


def test_markdown_stays_under_1_mib_for_100_replicas_and_50_faults(tmp_path):
    run = _big_run(tmp_path / "big")
    proc = analyze(run, "--no-report", "--markdown", tmp_path / "big.md")
    assert proc.returncode in (0, 1, 3), proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert len(summary["faults"]) == 50
    assert max(len(s["per_replica"]) for s in summary["segments"]) == 100
    text = (tmp_path / "big.md").read_text()
    assert len(text.encode()) < STEP_SUMMARY_LIMIT
    assert f"and {50 - MAX_FAULTS} more faults" in text  # cut, and says so
    assert any(t.type == "table_open" for t in _tokens(text))


def test_markdown_hard_limit_cuts_at_a_line_and_closes_what_is_open(runs):
    summary = json.loads((runs["fail"] / "summary.json").read_text())
    big = {"examples": ["x" * 100] * 200}
    summary["checks"] = [{"name": f"made_up_{i}", "status": "fail", "passed": False,
                          "value": i, "threshold": 0, "detail": "d", "reason": "",
                          "evidence": big} for i in range(400)]
    text = render_markdown(summary, max_bytes=40_000)
    assert len(text.encode()) <= 40_000
    assert text.count("```") % 2 == 0 and text.count("<details>") == text.count("</details>")
    assert "Cut here" in text and "and 370 more failed checks" not in text[:100]
    _tokens(text)  # still parses


def test_step_summary_appended_within_githubs_limit(runs, tmp_path):
    step = tmp_path / "step.md"
    step.write_text("earlier output of this step\n" * 1000)
    before = step.stat().st_size
    env = _env(GITHUB_STEP_SUMMARY=str(step))
    assert analyze(runs["fail"], "--no-report", env=env).returncode == 1
    text = step.read_text()
    assert text.startswith("earlier output") and "FAIL" in text[before:]
    assert step.stat().st_size <= STEP_SUMMARY_LIMIT
    # Almost full: what fits is appended, cut; the file never passes 1 MiB.
    step.write_text("y" * (STEP_SUMMARY_LIMIT - 1300) + "\n")
    assert analyze(runs["fail"], "--no-report", env=env).returncode == 1
    assert STEP_SUMMARY_LIMIT - 1300 < step.stat().st_size <= STEP_SUMMARY_LIMIT
    assert "Cut here" in step.read_text()[-400:]
    # Full: nothing appended, one warning line.
    step.write_text("z" * (STEP_SUMMARY_LIMIT - 100))
    proc = analyze(runs["fail"], "--no-report", env=env)
    assert proc.returncode == 1 and "full" in proc.stderr
    assert step.stat().st_size == STEP_SUMMARY_LIMIT - 100


def test_unwritable_junit_is_one_line_exit_2(runs, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = analyze(runs["pass"], "--no-report", "--junit", blocker / "junit.xml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot write" in proc.stderr.strip().splitlines()[-1]


# -- --compare ---------------------------------------------------------------------------

def test_compare_side_by_side(runs, tmp_path):
    out = tmp_path / "cmp"
    proc = analyze("--compare", runs["pass"], runs["fail"], runs["inconclusive"], "--out", out)
    assert proc.returncode == 0, proc.stderr
    html = (out / "compare.html").read_text()
    text = (out / "compare.md").read_text()
    for name in ("pass", "fail", "inconclusive"):
        assert f"<code>{name}</code>" in html and f"`{name}`" in text
    assert "FAIL" in text and "INCONCLUSIVE" in text
    assert "% CI" in text  # each run after the first, against the first, with intervals
    tables = [t for t in _tokens(text) if t.type == "table_open"]
    assert len(tables) >= 4  # runs, levels, errors, counter, checks
    assert "counter_duplicates" in text and "unexplained_increments" in text
    assert "req/s at 1 replica" in proc.stdout
    bad = analyze("--compare", runs["pass"], tmp_path / "nope")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_compare_default_out_is_the_first_run(runs):
    proc = analyze("--compare", runs["pass"], runs["nocounter"], "--quiet")
    assert proc.returncode == 0 and (runs["pass"] / "compare.md").exists()


# -- the example CI files ----------------------------------------------------------------

def _fetch(workdir: Path, *args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(EXAMPLES / "fetch-baseline.sh"), *args],
                          capture_output=True, text=True, timeout=60, cwd=workdir,
                          env=_env(**env))


def test_fetch_baseline_from_a_local_artifact_directory(runs, tmp_path):
    """Without network: the script's local mode (an artifact already downloaded, or a CI
    cache) is what can be tested here; the GitHub download itself cannot."""
    artifacts = tmp_path / "artifacts"
    (artifacts / "scalecheck-run").mkdir(parents=True)
    for name in ("run.json", "summary.json"):
        (artifacts / "scalecheck-run" / name).write_text((runs["pass"] / name).read_text())
    (artifacts / "scalecheck-run" / "requests").symlink_to(runs["pass"] / "requests")
    proc = _fetch(tmp_path, "--from-dir", str(artifacts), "--to", str(tmp_path / "baseline"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "baseline" / "summary.json").exists()
    assert proc.stdout.strip() == str(tmp_path / "baseline")
    # And the baseline works as one.
    assert analyze(runs["pass"], "--no-report", "--quiet", "--baseline",
                   proc.stdout.strip()).returncode == 0


def test_fetch_baseline_without_one_is_not_an_error(tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    proc = _fetch(tmp_path, "--from-dir", str(empty), "--to", str(tmp_path / "baseline"))
    assert proc.returncode == 0 and proc.stdout.strip() == ""
    assert "no baseline" in proc.stderr
    # No token, no artifact directory: says why in one line, no baseline, exit 0.
    proc = _fetch(tmp_path, "--to", str(tmp_path / "b2"), GITHUB_ACTIONS="", GITLAB_CI="")
    assert proc.returncode == 0 and proc.stdout.strip() == "" and "no baseline" in proc.stderr


def test_the_example_ci_files_run_scalecheck_check():
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    runs_text = "\n".join(s.get("run", "") for s in steps)
    assert "scalecheck check" in runs_text and "--junit" in runs_text
    assert "fetch-baseline.sh" in runs_text
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    assert any("publish-unit-test-result-action" in u or "test-reporter" in u for u in uses)
    gitlab = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    job = next(v for k, v in gitlab.items() if isinstance(v, dict) and "script" in v)
    assert "scalecheck check" in "\n".join(job["script"])
    assert job["artifacts"]["reports"]["junit"] and job["artifacts"]["when"] == "always"


# -- scalecheck check: a real run ----------------------------------------------------------

def _check(args: list[str], env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "loadtest.cli.main", "check", "-u", "4", "-r", "4",
           "--stack-port", str(free_port()), "--api-port", str(free_port()), "--only-summary",
           "--min-steady", "2s", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or _env())


def test_check_runs_and_judges_in_one_command(tmp_path, no_leftovers):
    run = tmp_path / "run"
    proc = _check(["--scale-levels", "1,2", "--stage-time", "4s", "--run-dir", str(run),
                   "--junit", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "s.md")])
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, (out[-2000:], err[-2000:])
    assert "verdict: PASS" in out and "Traceback" not in err
    assert json.loads((run / "summary.json").read_text())["verdict"] == "pass"
    assert _junit_counts(tmp_path / "j.xml")["failed"] == []
    assert "xychart-beta" in (tmp_path / "s.md").read_text()
    # The same command against that run as the baseline, thresholds after `--`.
    again = _check(["--scale-levels", "1,2", "--stage-time", "4s", "--run-dir",
                    str(tmp_path / "again"), "--baseline", str(run), "--",
                    "--max-error-rate", "0.02", "--no-report"])
    out, err = again.communicate(timeout=180)
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["thresholds"]["max_error_rate"] == 0.02
    names = {c["name"] for c in summary["checks"]}
    assert {"regression_rps_level_1", "regression_p99_level_2"} <= names
    assert again.returncode in (0, 3), (out[-2000:], err[-2000:])  # never a false fail


def test_check_fails_a_faulty_app(tmp_path, no_leftovers):
    proc = _check(["--scale-levels", "2", "--stage-time", "4s", "--run-dir",
                   str(tmp_path / "racy"), "--junit", str(tmp_path / "j.xml")],
                  env=_env(COUNTER_MODE="racy"))
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, (out[-2000:], err[-2000:])
    assert "counter_duplicates" in _junit_counts(tmp_path / "j.xml")["failed"]


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_check_interrupted_exits_130_143_and_says_what_ran(tmp_path, sig, code, no_leftovers):
    run = tmp_path / "run"
    proc = _check(["--scale-levels", "1,2", "--stage-time", "6s", "--run-dir", str(run),
                   "--junit", str(tmp_path / "j.xml")])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list((run / "requests").glob("*.parquet"))
                                              if (run / "requests").exists() else []) < 3:
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out[-2000:], err[-2000:])
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert "verdict: INCONCLUSIVE" in out and "Traceback" not in err
    assert "run_completed" in _junit_counts(tmp_path / "j.xml")["not checked"]


def test_check_bad_input_is_one_line_exit_2(tmp_path, no_leftovers):
    proc = _check(["--scale-levels", "0", "--run-dir", str(tmp_path / "bad")])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert not (tmp_path / "bad" / "summary.json").exists()
