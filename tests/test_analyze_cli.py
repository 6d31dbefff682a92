"""analyze.py as a user runs it: outputs, exit codes, bad input, baseline, thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.contract.synth import Anomalies, SynthSpec, generate, write
from tests.conftest import ROOT


def analyze(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def synth_run(path: Path, requests: int = 6000, **kwargs) -> Path:
    anomalies = Anomalies(**kwargs.pop("anomalies", {}))
    meta, cols = generate(SynthSpec(requests, anomalies=anomalies, **kwargs))
    return write(path, meta, cols)


def test_clean_run_writes_report_and_exits_0(tmp_path):
    run = synth_run(tmp_path / "clean")
    proc = analyze(run)
    assert proc.returncode == 0, proc.stderr
    assert "verdict: PASS" in proc.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert {"run_id", "requests", "verdict", "stages", "consistency", "checks"} <= set(summary)
    stage = summary["stages"][0]
    assert {"index", "level", "requests", "rps", "error_rate", "latency_ms", "hostnames",
            "fairness", "uncovered"} <= set(stage)
    assert set(stage["latency_ms"]) >= {"p50", "p90", "p95", "p99", "max"}
    assert set(stage["fairness"]) == {"jain", "cv", "max_mean", "chi2_p"}
    assert {"ok", "fail", "unknown", "duplicates", "unexpected", "gaps", "lost",
            "order_violations", "counter_before", "counter_after"} <= set(summary["consistency"])
    assert all({"name", "passed", "value", "threshold"} <= set(c) for c in summary["checks"])
    html = (run / "report.html").read_text()
    assert "Verdict: <b>PASS</b>" in html and "data:image/png;base64," in html
    assert "http://" not in html.replace("http://synthetic.invalid", "")  # opens offline
    assert {p.name for p in (run / "figures").iterdir()} >= {
        "distribution.png", "throughput.png", "latency.png", "counter.png", "scaling.png"}


def test_failing_run_exits_1_and_names_the_anomaly(tmp_path):
    run = synth_run(tmp_path / "dup", anomalies={"duplicates": 3})
    proc = analyze(run)
    assert proc.returncode == 1
    assert "FAIL  counter_duplicates: 3" in proc.stdout


def test_missing_records_are_a_failed_check(tmp_path):
    run = synth_run(tmp_path / "short")
    meta = json.loads((run / "run.json").read_text())
    meta["totals"]["locust"] += 5
    (run / "run.json").write_text(json.dumps(meta))
    proc = analyze(run, "--no-report")
    assert proc.returncode == 1 and "records_complete" in proc.stdout


def test_without_counter_reads_checks_say_not_checked(tmp_path):
    run = synth_run(tmp_path / "ext")
    meta = json.loads((run / "run.json").read_text())
    meta["counter"] = {"before": None, "after": None}
    (run / "run.json").write_text(json.dumps(meta))
    # Checks that apply but could not be made: never a pass (exit 3, inconclusive).
    proc = analyze(run, "--no-report")
    assert proc.returncode == 3, proc.stdout
    assert "INCONCLUSIVE — 4 of" in proc.stdout
    checks = {c["name"]: c for c in json.loads((run / "summary.json").read_text())["checks"]}
    for name in ("counter_unexpected", "counter_lost_increments",
                 "counter_unexplained_increments", "counter_final_below_returned"):
        assert checks[name]["status"] == "not checked" and checks[name]["passed"] is None
    # Accepted as not applicable, by name: then the rest decides.
    accepted = ",".join(["counter_unexpected", "counter_lost_increments",
                         "counter_unexplained_increments", "counter_final_below_returned"])
    proc = analyze(run, "--no-report", "--allow-unchecked", accepted)
    assert proc.returncode == 0, proc.stdout
    checks = {c["name"]: c for c in json.loads((run / "summary.json").read_text())["checks"]}
    assert checks["counter_lost_increments"]["status"] == "not applicable"


def _bad_dirs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = synth_run(tmp_path / "good", requests=600)
    cases = {"missing": (tmp_path / "nope", "no such run directory")}
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["empty"] = (empty, "empty")
    norec = tmp_path / "norec"
    (norec / "requests").mkdir(parents=True)
    (norec / "run.json").write_text((good / "run.json").read_text())
    cases["no records"] = (norec, "recorded no requests")
    badjson = tmp_path / "badjson"
    badjson.mkdir()
    (badjson / "run.json").write_text("{ not json")
    cases["bad run.json"] = (badjson, "does not parse")
    for name, content in {"truncated": None, "foreign": b"PAR1 hello"}.items():
        d = tmp_path / name
        d.mkdir()
        (d / "run.json").write_text((good / "run.json").read_text())
        (d / "requests").mkdir()
        part = next((good / "requests").glob("*.parquet"))
        data = part.read_bytes()
        (d / "requests" / "part-x.parquet").write_bytes(content or data[: len(data) // 2])
        cases[name] = (d, "part-x.parquet")
    return cases


def test_bad_input_is_one_line_exit_2(tmp_path):
    for name, (path, message) in _bad_dirs(tmp_path).items():
        proc = analyze(path)
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("  [")]
        assert proc.returncode == 2, (name, proc.stderr)
        assert len(lines) == 1 and message in lines[0], (name, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("op,value,outcome,message", [
    ("wrte", '"v"', None, "unknown operation 'wrte'"),
    ("cas", '"v"', None, 'a cas takes [expected, new] as its value, not "v"'),
    ("incr", '"two"', None, 'an incr takes an integer to add, not "two"'),
    ("write", '"v"', "done", "outcome 'done' is not one of ok, fail"),
])
def test_an_operation_the_checkers_cannot_read_is_one_line(tmp_path, op, value, outcome,
                                                           message):
    """A record of a state operation the checkers cannot read (written by hand, or by
    something other than loadtest.ops): one line naming the record, exit 2, never a
    traceback, never judged as the app's doing."""
    import numpy as np

    meta, cols = generate(SynthSpec(600))
    for name in ("op", "key", "value", "seen", "outcome"):
        cols[name] = np.full(len(cols["t_start"]), None, dtype=object)
    cols["op"][100], cols["key"][100], cols["value"][100] = op, "k", value
    cols["outcome"][100] = outcome
    proc = analyze(write(tmp_path / "run", meta, cols))
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("  [")]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "the record of synth/" in lines[0] and "Traceback" not in proc.stderr


def test_unknown_option_is_usage_error(tmp_path):
    proc = analyze("--frobnicate")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_baseline_regression(tmp_path):
    base = synth_run(tmp_path / "base", levels=[1, 2])
    assert analyze(base, "--no-report").returncode == 0
    # The same history, but every request twice as slow: fewer requests/s, higher p99.
    meta, cols = generate(SynthSpec(6000, [1, 2]))
    cols["latency_ms"] = cols["latency_ms"] * 3
    t0 = cols["t_start"].min()
    cols["t_start"] = t0 + (cols["t_start"] - t0) * 3
    cols["t_end"] = cols["t_start"] + cols["latency_ms"] / 1000
    for stage in meta["stages"]:
        for key in ("t_start", "t_ready", "t_end"):
            stage[key] = t0 + (stage[key] - t0) * 3
    for event in meta["stack_events"]:
        event["t"] = t0 + (event["t"] - t0) * 3
    slow = write(tmp_path / "slow", meta, cols)
    proc = analyze(slow, "--baseline", base)
    assert proc.returncode == 1, proc.stdout
    assert "regression_rps_level_1" in proc.stdout and "regression_p99_level_2" in proc.stdout
    assert (slow / "figures" / "baseline.png").exists()
    assert analyze(base, "--baseline", base, "--no-report").returncode == 0


def test_thresholds_from_pyproject_and_command_line(tmp_path):
    run = synth_run(tmp_path / "skew", balance="skewed")
    assert analyze(run, "--no-report").returncode == 1
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.scalecheck.thresholds]\nmin_jain = 0.5\n")
    assert analyze(run, "--no-report", cwd=project).returncode == 0
    assert analyze(run, "--no-report", "--min-jain", "0.99", cwd=project).returncode == 1
    (project / "pyproject.toml").write_text("[tool.scalecheck.thresholds]\nmin_jian = 0.5\n")
    proc = analyze(run, "--no-report", cwd=project)
    assert proc.returncode == 2 and "min_jian" in proc.stderr


def test_balance_policy_and_its_old_name(tmp_path):
    """--balance-policy is the policy judged (--balancer, under Locust, is which balancer
    runs); --balance, its old name, still works for one release and says the new one in
    one line."""
    run = synth_run(tmp_path / "policy")
    settings = lambda: json.loads((run / "summary.json").read_text())["settings"]  # noqa: E731
    new = analyze(run, "--no-report", "--quiet", "--balance-policy", "leastconn")
    assert new.returncode == 0 and new.stderr == "", new.stderr
    assert settings()["balance"] == "leastconn"
    old = analyze(run, "--no-report", "--quiet", "--balance", "weights:hello-1=2")
    assert old.returncode in (0, 1), old.stderr
    assert old.stderr.splitlines() == ["python analyze.py: warning: --balance is now "
                                       "--balance-policy (--balance still works, for one "
                                       "release)"]
    assert (settings()["balance"], settings()["weights"]) == ("weights", {"hello-1": 2.0})
    bad = analyze(run, "--no-report", "--balance-policy", "fair")
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == ["python analyze.py: error: --balance-policy 'fair': "
                                       "choose roundrobin, leastconn or weights:NAME=W,..."]


@pytest.mark.parametrize("flag", ["--help"])
def test_help_lists_thresholds(flag):
    out = analyze(flag).stdout
    assert "--max-error-rate" in out and "--min-jain" in out and "--baseline" in out


def test_the_scalecheck_command(tmp_path):
    """The console entry point: the same analysis, the harness's options listed."""
    run = synth_run(tmp_path / "cli")
    scalecheck = [sys.executable, "-m", "loadtest.cli.main"]
    proc = subprocess.run([*scalecheck, "analyze", str(run), "--no-report", "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "verdict: PASS", proc.stderr
    options = subprocess.run([*scalecheck, "options"], capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
    assert options.returncode == 0
    for option in ("--scale-levels", "--balancer", "--autoscale", "--fault", "--load-profile"):
        assert option in options.stdout
    bad = subprocess.run([*scalecheck, "frobnicate"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    # `run` with no Locust to start: one line, no traceback. The interpreter is reached
    # through a link in a folder with no locust beside it, and PATH has none either.
    lonely = tmp_path / "bin"
    lonely.mkdir()
    (lonely / "python").symlink_to(Path(sys.executable).resolve())
    run_cmd = subprocess.run([str(lonely / "python"), "-m", "loadtest.cli.main", "run",
                              "--headless"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT,
                             env={"PATH": str(tmp_path / "none"), "PYTHONPATH": str(ROOT)})
    assert run_cmd.returncode == 2 and "Traceback" not in run_cmd.stderr
    assert "locust is not installed" in run_cmd.stderr


# -- hostile run directories: FIFOs, a read-only mount, a run.json that is not an object --

def _analyze_bounded(*args: str) -> subprocess.CompletedProcess:
    """analyze.py that must answer soon: a FIFO made it wait forever."""
    return subprocess.run([sys.executable, str(ROOT / "analyze.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


def _one_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("  [")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_what_is_not_a_regular_file_is_refused_not_waited_on(tmp_path):
    run = synth_run(tmp_path / "fifo", requests=600)
    run_json = run / "run.json"
    run_json.rename(tmp_path / "run.json")
    os.mkfifo(run_json)
    assert "run.json: not a regular file (a FIFO)" in _one_error(_analyze_bounded(run))
    run_json.unlink()
    (tmp_path / "run.json").rename(run_json)
    os.mkfifo(run / "requests" / "part-zz.parquet")
    assert "part-zz.parquet: not a regular file (a FIFO)" in \
        _one_error(_analyze_bounded(run, "--no-report"))
    skipped = _analyze_bounded(run, "--no-report", "--skip-bad-parts")
    assert skipped.returncode == 3 and "skipped part-zz.parquet: not a regular file" in \
        skipped.stderr
    (run / "requests" / "part-zz.parquet").unlink()
    (run / "requests" / "part-zz.parquet").mkdir()
    assert "part-zz.parquet: not a regular file (a directory)" in \
        _one_error(_analyze_bounded(run, "--no-report"))


@pytest.mark.parametrize("content", ["[]", "null", '"a run"', "42"])
def test_a_run_json_that_is_not_an_object_is_one_line(tmp_path, content):
    run = synth_run(tmp_path / "notobj", requests=600)
    (run / "run.json").write_text(content)
    assert "not a run record (the top level is not an object)" in \
        _one_error(_analyze_bounded(run))


@pytest.fixture
def read_only_run(tmp_path):
    """A run on a read-only mount, as an artifact is (root only: skipped otherwise)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        synth_run(mount / "run", requests=6000)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield mount / "run"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_read_only_run_directory_still_gets_its_verdict(read_only_run, tmp_path):
    """The verdict was computed: it is printed, with its exit code, and one line says what
    could not be written (it exited 2, saying nothing of the verdict)."""
    proc = _analyze_bounded(read_only_run)
    assert proc.returncode == 0 and "verdict: PASS" in proc.stdout, proc.stderr
    said = [ln for ln in proc.stderr.splitlines() if not ln.startswith("  [")]
    assert said == [f"python analyze.py: warning: could not write summary.json, report.html "
                    f"and figures/ in {read_only_run}: Read-only file system (--out DIR writes "
                    "them elsewhere)"]
    out = tmp_path / "elsewhere"
    proc = _analyze_bounded(read_only_run, "--out", out)
    assert proc.returncode == 0 and f"in {out}" in proc.stdout, proc.stderr
    assert json.loads((out / "summary.json").read_text())["verdict"] == "pass"
    assert (out / "report.html").exists() and (out / "figures" / "throughput.png").exists()
    # --out names where to write: not being able to is an error (exit 2), verdict still said
    proc = _analyze_bounded(read_only_run, "--out", read_only_run / "sub", "--quiet")
    assert proc.returncode == 2 and proc.stdout.strip() == "verdict: PASS"
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "python analyze.py: error: could not write summary.json")
