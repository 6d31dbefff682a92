"""Hostile input to the harness: each case is one line on stderr, exit 2, no traceback and
nothing created; a path the user chose is carried whole into every configuration."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from loadtest.harness import options as harness_options
from tests.conftest import ROOT, free_port, run_locust

DIGITS = "9" * 400
TEAM_HPA = ROOT / "tests" / "data" / "hpa" / "team.yaml"
SHOP_BASE = ROOT / "examples" / "shop" / "k8s" / "base"


@pytest.mark.parametrize("args,message", [
    # durations: bounded to a week, never Infinity or NaN in run.json
    (["--run-time", DIGITS], "--run-time 99999999999999999999... s is longer than 7 days"),
    (["--stage-time", DIGITS], "--stage-time: '9999999999999999999999999999999999999999...' "
                               "is longer than 7 days"),
    (["--stage-time", "99999999999h"], "--stage-time: '99999999999h' is longer than 7 days"),
    (["--scale-levels", "1,2", "--stage-time", "100h"], "the plan lasts 8.33 days"),
    (["--min-steady", "1e400s"], "--min-steady: '1e400s' is not a duration"),
    (["--min-steady", f"{DIGITS}s"], "--min-steady: '9999"),
    (["--autoscale", "hpa", "--autoscale-target", "9", "--autoscale-period", f"{DIGITS}ms"],
     "--autoscale-period: '9999"),
    (["--autoscale", "hpa", "--autoscale-target", "9", "--scale-down-window", "200h"],
     "--scale-down-window: '200h' is longer than 7 days"),
    (["--ready-timeout", "169h"], "--ready-timeout: '169h' is longer than 7 days"),
    (["--drain-time", DIGITS], "--drain-time/--stop-grace: longer than 7 days"),
    (["--load-profile", f"0s:5,{DIGITS}s:5"], "its time is longer than 7 days"),
    (["--fault", f"{DIGITS}s:kill-replica"], "is longer than 7 days"),
    (["--fault", f"1s:pause-redis:{DIGITS}"], "is longer than 7 days"),
    (["--fault", f"1s:latency:redis:{DIGITS}ms:2s"], "is longer than 7 days"),
    # numbers: finite, or not at all
    (["--rate-per-user", "nan"], "--rate-per-user: 'nan' is not a finite number"),
    (["--arrival-rate", "inf"], "--arrival-rate: 'inf' is not a finite number"),
    (["--autoscale", "hpa", "--autoscale-target", "1e400"],  # argparse reads it as inf
     "--autoscale-target: 'inf' is not a finite number"),
    (["--slo-p95-ms", "nan"], "--slo-p95-ms: 'nan' is not a finite number"),
    # options the run would ignore, refused naming the conflict
    (["--scale-levels", "1,2", "--autoscale", "hpa", "--autoscale-target", "10"],
     "--scale-levels would be ignored: --autoscale hpa chooses the replica count"),
    (["--stack", "external", "-H", "http://127.0.0.1:9", "--scale-levels", "1,2"],
     "--scale-levels would be ignored: the external stack is not the harness's to run"),
    (["--stack", "external", "-H", "http://127.0.0.1:9", "--balancer", "haproxy"],
     "--balancer would be ignored: the external stack"),
    (["--autoscale-target", "50"], "--autoscale-target would be ignored: it tunes an "
                                   "autoscaler, and none runs"),
    (["--autoscale", "kpa", "--autoscale-target", "10", "--hpa-tolerance", "0.2"],
     "--hpa-tolerance would be ignored: --autoscale kpa does not read it"),
    (["--autoscale", "hpa", "--autoscale-target", "10", "--kpa-stable-window", "30s"],
     "--kpa-stable-window would be ignored: --autoscale hpa does not read it"),
    (["--load-profile", "0s:1,6s:2", "--scale-levels", "2", "--stage-time", "5s"],
     "--stage-time would be ignored: the run has one stage, and --load-profile sets its end"),
    (["--run-time", "6s", "--scale-levels", "1", "--stage-time", "5s"],
     "--stage-time would be ignored: the run has one stage, and --run-time sets its end"),
    (["--arrival-rate", "20", "--load-profile", "0s:10,5s:30", "--scale-levels", "1"],
     "--arrival-rate would be ignored: --load-profile gives the rate at each of its points"),
    (["--load-profile", "0s:1,5s:3", "--scale-levels", "1"],  # with -u 1
     "-u/--users would be ignored: --load-profile gives the users at each of its points"),
    (["--compose-file", "compose.yml"], "--compose-file would be ignored: it is an option of "
                                        "--stack compose, and this run is --stack local"),
    (["--stack", "compose", "--app-cmd", "app {port}"],
     "--app-cmd would be ignored: it is an option of --stack local"),
    # the team's HPA sets the autoscaler's knobs: a flag for one of them is a conflict
    (["--hpa-manifest", str(TEAM_HPA), "--autoscale-target", "50"],
     f"--autoscale-target would be ignored: --hpa-manifest {TEAM_HPA} sets it"),
    (["--hpa-manifest", str(TEAM_HPA), "--max-replicas", "3"],
     "--max-replicas would be ignored: --hpa-manifest"),
    (["--hpa-manifest", str(TEAM_HPA), "--autoscale-metric", "cpu"],
     "--autoscale-metric would be ignored: --hpa-manifest"),
    (["--hpa-manifest", str(TEAM_HPA), "--autoscale", "kpa"],
     "--hpa-manifest describes an HPA: --autoscale kpa cannot follow it"),
    (["--hpa-manifest", "missing.yaml"], "missing.yaml: No such file or directory"),
    # --autoscale cluster: refused before a cluster exists
    (["--autoscale", "cluster"], "only --stack kubernetes has an autoscaler of its own"),
    (["--stack", "kubernetes", "--autoscale", "cluster"],
     "the manifests have no HorizontalPodAutoscaler for Deployment hello"),
    (["--stack", "kubernetes", "--autoscale", "cluster", "--autoscale-metric", "rps",
      "--autoscale-target", "5"], "writes an HPA on CPU utilisation only"),
    (["--stack", "kubernetes", "--autoscale", "cluster", "--kube-manifests", str(SHOP_BASE),
      "--min-replicas", "3"], "the manifests' HPA sets it"),
    (["--stack", "kubernetes", "--autoscale", "cluster", "--autoscale-metric", "cpu",
      "--autoscale-target", "50", "--scale-down-window", "30s"],
     "the cluster's HPA has its own"),
    # a word from a fixed set: argparse's one line, at parse time
    (["--autoscale", "hap"], "argument --autoscale: 'hap': choose none, hpa, kpa, cluster"),
    (["--autoscale-metric", "mem"],
     "argument --autoscale-metric: 'mem': choose rps, inflight, cpu, p95"),
    (["--load-model", "half"], "argument --load-model: 'half': choose closed, open"),
    (["--balancer", "nginx"], "argument --balancer: 'nginx': choose traefik, haproxy"),
    (["--stack", "nomad"], "argument --stack: unknown backend 'nomad'; choose local, "
                           "compose, swarm, kubernetes, external"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(args, message, tmp_path,
                                                           no_leftovers):
    run_dir = tmp_path / "run"
    proc = run_locust(["--headless", "-u", "1", "--stack-port", str(free_port()),
                       "--run-dir", str(run_dir), *args], timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-1500:]
    assert not run_dir.exists() and sorted(p.name for p in tmp_path.iterdir()) == []


HPA_HEAD = """apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {kind: Deployment, name: web}
  maxReplicas: 4
"""
CPU = "  - {type: Resource, resource: {name: cpu, target: {type: Utilization, " \
      "averageUtilization: 60}}}\n"


@pytest.mark.parametrize("text, message", [
    (HPA_HEAD + "  metrics:\n  - {type: External, external: {metric: {name: queue}}}\n",
     "hpa.yaml: spec.metrics[0].type 'External': the simulation cannot measure External"),
    (HPA_HEAD + "  metrics:\n" + CPU + CPU, "hpa.yaml: spec.metrics has 2 metrics"),
    (HPA_HEAD + "  metrics:\n" + CPU.replace("cpu", "memory"),
     "hpa.yaml: spec.metrics[0].resource.name 'memory'"),
    (HPA_HEAD.replace("autoscaling/v2", "autoscaling/v1"),
     "hpa.yaml: apiVersion 'autoscaling/v1': the simulation reads autoscaling/v2"),
    ("spec: [\n", "hpa.yaml: not YAML"),
])
def test_a_manifest_the_simulation_cannot_honour_is_one_line(text, message, tmp_path,
                                                              no_leftovers):
    """Refused before anything starts, naming the field, with the file as the user gave
    it (a relative path, from the folder the harness started in)."""
    (tmp_path / "hpa.yaml").write_text(text)
    proc = run_locust(["--headless", "-u", "1", "--stack-port", str(free_port()),
                       "--run-dir", "run", "--hpa-manifest", "hpa.yaml"], timeout=60,
                      cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-1500:]
    assert f"--hpa-manifest {tmp_path / 'hpa.yaml'}" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpa.yaml"]


def test_a_plan_within_a_week_still_runs_its_course(tmp_path):
    """The bound is a week, not less: a six-day stage is a plan (validated, not run)."""
    parser = _parser()
    parsed = parser.parse_args(["--scale-levels", "1", "--stage-time", "144h",
                                "--run-dir", str(tmp_path / "r")])
    options = harness_options.validate(parsed, check_dir=False)
    assert options.plan.duration == 144 * 3600
    json.loads(json.dumps(options.plan.to_dict(), allow_nan=False))  # JSON, every number


def test_the_defaults_shown_by_the_web_ui_are_no_conflict(tmp_path):
    """The web UI sends every field back, defaults included (a list as ['']): only a value
    the user changed is a conflict."""
    parser = _parser()
    parsed = parser.parse_args(["--autoscale", "hpa", "--autoscale-target", "10",
                                "--run-dir", str(tmp_path / "r")])
    parsed.app_env = [""]
    parsed.scale_levels = "1, 2, 4"
    assert harness_options.validate(parsed, check_dir=False).plan.autoscale is not None


@pytest.mark.parametrize("dest,value,message", [
    ("autoscale", "hap", "--autoscale 'hap': choose none, hpa, kpa, cluster"),
    ("autoscale_metric", "mem", "--autoscale-metric 'mem': choose rps, inflight, cpu, p95"),
    ("load_model", "half", "--load-model 'half': choose closed, open"),
    ("balancer", "nginx", "--balancer 'nginx': choose traefik, haproxy"),
    ("stack", "nomad", "--stack: unknown backend 'nomad'; choose local, compose, swarm, "
                       "kubernetes, external"),
])
def test_the_web_ui_cannot_slip_a_word_past_the_choices(dest, value, message, tmp_path):
    """Locust's web UI sets parsed options as plain strings, past argparse's type= and
    choices=: validate still refuses a word outside the set, in one line naming the
    option, and takes an empty field for the default."""
    parsed = _parser().parse_args(["--autoscale", "hpa", "--autoscale-target", "10",
                                   "--run-dir", str(tmp_path / "r")])
    setattr(parsed, dest, value)
    with pytest.raises(harness_options.UsageError) as refused:
        harness_options.validate(parsed, check_dir=False)
    assert str(refused.value) == message
    setattr(parsed, dest, "")
    if dest == "autoscale":
        parsed.autoscale_target = ""  # no autoscaler: its target left empty too
    options = harness_options.validate(parsed, check_dir=False)
    assert getattr(options, dest) == harness_options.DEFAULTS[dest]


@pytest.mark.parametrize("args", [
    ["--stack", "external", "-H", "http://127.0.0.1:5000", "--expect-replicas", "3",
     "--counter-field", "none", "--stage-time", "60s", "-u", "10", "-r", "10"],
    ["--load-model", "open", "--load-profile", "0s:20,20s:150", "--autoscale", "hpa",
     "--autoscale-metric", "cpu", "--autoscale-target", "60", "--replica-cpus", "0.25"],
    ["--load-profile", "ramp", "-u", "30", "--scale-levels", "2"],
])
def test_what_each_run_reads_is_no_conflict(args, tmp_path):
    """The options a run does read, defaults included (the app's, the backends'), are never
    taken for ignored ones: the README's external run was refused for --app-port."""
    parsed = _parser().parse_args([*args, "--run-dir", str(tmp_path / "r")])
    assert harness_options.validate(parsed, check_dir=False).plan is not None


def _parser():
    import argparse

    parser = argparse.ArgumentParser()
    for flag, dest, kind in (("-u", "num_users", int), ("-r", "spawn_rate", float),
                             ("-t", "run_time", int), ("-H", "host", str)):
        parser.add_argument(flag, dest=dest, type=kind, default=None)
    harness_options.add_arguments(parser)
    return parser


# -- paths in generated configuration --------------------------------------------------

HOSTILE_NAMES = ['quote"d', "it's", "hash #1", "colon: x", "{braces} [and] *star", "ünï"]


def test_traefik_configuration_carries_any_path_whole(tmp_path):
    from loadtest.stack.balancers.traefik import dynamic_config, static_config, write_yaml

    for name in HOSTILE_NAMES:
        base = tmp_path / name
        base.mkdir()
        config = static_config(4000, 4001, base / "traefik.log", base / "access.log",
                               base / "dynamic")
        write_yaml(base / "traefik.yml", config)
        read = yaml.safe_load((base / "traefik.yml").read_text())
        assert read["log"]["filePath"] == str(base / "traefik.log")
        assert read["accessLog"]["filePath"] == str(base / "access.log")
        assert read["providers"]["file"]["directory"] == str(base / "dynamic")
    dynamic = dynamic_config(["127.0.0.1:5000"], '/he"alth #x', 200)
    write_yaml(tmp_path / "hello.yml", dynamic, "a comment")
    check = yaml.safe_load((tmp_path / "hello.yml").read_text())
    service = check["http"]["services"]["hello"]["loadBalancer"]
    assert service["healthCheck"]["path"] == '/he"alth #x'
    assert service["servers"] == [{"url": "http://127.0.0.1:5000"}]


def test_a_run_directory_with_a_quote_runs(tmp_path, no_leftovers):
    """A '"' in --run-dir broke Traefik's YAML, and the message blamed a busy port."""
    run_dir = tmp_path / 'it\'s a "run" #1: here'
    proc = run_locust(["--headless", "-u", "2", "-r", "2", "--scale-levels", "1",
                       "--stage-time", "3s", "--run-dir", str(run_dir), "--only-summary",
                       "--stack-port", str(free_port()), "--api-port", str(free_port())],
                      timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["totals"]["recorded"] > 0
    assert run["naming"]["named"] > 0  # Traefik's access log, at the path as typed


@pytest.mark.parametrize("stack,path,message", [
    ("local", "run\nnext", "contains a control character ('\\n')"),
    ("local", "run\tx", "contains a control character ('\\t')"),
    ("compose", "a:b", "contains a colon, which Docker's bind mounts (SOURCE:TARGET) cannot "
                       "carry on --stack compose"),
])
def test_a_run_directory_no_tool_can_carry_is_refused(stack, path, message, tmp_path):
    proc = run_locust(["--headless", "-u", "1", "--stack", stack, "--stack-port",
                       str(free_port()), "--run-dir", str(tmp_path / path)], timeout=60,
                      cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert message in proc.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_traefik_that_cannot_start_says_why_in_its_own_words(tmp_path, no_leftovers):
    """The real cause, from Traefik's own output, and a log that exists; no guess."""
    from loadtest.stack.balancers.base import BalancerPaths
    from loadtest.stack.balancers.traefik import TraefikBalancer
    from loadtest.stack.base import StackError

    port = free_port()
    (tmp_path / "work").mkdir()
    balancer = TraefikBalancer(BalancerPaths(port, port, tmp_path / "work", tmp_path / "logs"))
    try:
        with pytest.raises(StackError) as caught:
            balancer.start()
    finally:
        balancer.stop()
    message = str(caught.value)
    assert "address already in use" in message and "is the port busy" not in message
    named = message.rsplit("(see ", 1)[1].rstrip(")")
    assert os.path.exists(named), message


def test_json_never_carries_nan(tmp_path):
    """run.json is JSON for other tools: a value that is not finite is written as null."""
    from loadtest.contract.rundir import RunRecord

    record = RunRecord(tmp_path, plan={"duration": float("inf"), "x": [float("nan"), 1.5]})
    assert record.save()
    text = (tmp_path / "run.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["plan"] == {"duration": None, "x": [None, 1.5]}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
