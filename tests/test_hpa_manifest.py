"""A team's HPA manifest read as the simulation's knobs, with Kubernetes' defaults, and
what cannot be simulated refused in one line naming the field."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from loadtest.autoscale.hpa import HpaKnobs, Policy, knobs_for
from loadtest.autoscale.hpa_manifest import DEFAULT_DOWN, DEFAULT_UP, ManifestError, parse, read
from loadtest.contract.plan import MAX_RUN_TIME_ENV
from loadtest.harness import options as harness_options
from tests.conftest import ROOT, free_port, run_locust

DATA = Path(__file__).parent / "data" / "hpa"
BASE = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5}}


def with_spec(**spec) -> dict:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    return doc


def test_a_team_s_file_of_several_documents():
    hpa = read(DATA / "team.yaml")
    k = hpa.knobs
    assert (hpa.name, hpa.target_kind, hpa.target_name, hpa.metric) == \
        ("shop", "Deployment", "shop", "cpu")
    assert (k.min_replicas, k.max_replicas, k.target, k.cpu, k.legacy) == (2, 6, 60.0, True,
                                                                           False)
    assert k.scale_down_window == 30 and k.down_policies == (Policy("Pods", 1, 20),)
    # scaleUp names only selectPolicy: the rest is Kubernetes' default
    assert k.scale_up_window == 0 and k.up_policies == DEFAULT_UP and k.select_up == "Min"


def test_defaults_without_metrics_or_behavior():
    k = parse(with_spec()).knobs
    assert (k.target, k.cpu, k.min_replicas, k.legacy) == (80.0, True, 1, True)
    k = parse(with_spec(behavior={})).knobs
    assert not k.legacy and k.scale_down_window == 300 and k.down_policies == DEFAULT_DOWN


def test_a_pods_metric_the_harness_measures():
    hpa = parse(with_spec(metrics=[{"type": "Pods", "pods": {
        "metric": {"name": "requests_per_second"},
        "target": {"type": "AverageValue", "averageValue": "50"}}}]))
    assert hpa.metric == "rps" and hpa.knobs.target == 50 and not hpa.knobs.cpu
    hpa = parse(with_spec(metrics=[{"type": "Pods", "pods": {
        "metric": {"name": "inflight"}, "target": {"type": "AverageValue",
                                                   "averageValue": "1500m"}}}]))
    assert hpa.metric == "inflight" and hpa.knobs.target == 1.5


@pytest.mark.parametrize("spec, field", [
    ({"metrics": [{"type": "External", "external": {}}]}, "spec.metrics[0].type 'External'"),
    ({"metrics": [{"type": "Resource", "resource": {"name": "memory", "target": {}}}]},
     "spec.metrics[0].resource.name 'memory'"),
    ({"metrics": [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "AverageValue", "averageValue": "200m"}}}]},
     "spec.metrics[0].resource.target.type 'AverageValue'"),
    ({"metrics": [{"type": "Pods", "pods": {"metric": {"name": "queue_depth"},
                                            "target": {"type": "AverageValue"}}}]},
     "spec.metrics[0].pods.metric.name 'queue_depth'"),
    ({"metrics": [{"type": "Resource"}, {"type": "Resource"}]}, "spec.metrics has 2 metrics"),
    ({"minReplicas": 9}, "spec.minReplicas 9 is above spec.maxReplicas 5"),
    ({"maxReplicas": 0}, "spec.maxReplicas: expected a whole number of at least 1"),
    ({"behavior": {"scaleDown": {"selectPolicy": "Sometimes"}}},
     "spec.behavior.scaleDown.selectPolicy 'Sometimes'"),
    ({"behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0,
                                             "periodSeconds": 15}]}}},
     "spec.behavior.scaleUp.policies[0].value"),
])
def test_what_cannot_be_simulated_is_one_line_naming_the_field(spec, field):
    with pytest.raises(ManifestError) as info:
        parse(with_spec(**spec), "hpa.yaml")
    message = str(info.value)
    assert message.startswith(f"hpa.yaml: {field}") and "\n" not in message


def test_files_that_are_not_an_hpa(tmp_path):
    (tmp_path / "dep.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\n")
    with pytest.raises(ManifestError, match="no HorizontalPodAutoscaler"):
        read(tmp_path / "dep.yaml")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ManifestError, match="not YAML"):
        read(tmp_path / "bad.yaml")
    with pytest.raises(ManifestError, match="apiVersion 'autoscaling/v1'"):
        parse({**BASE, "apiVersion": "autoscaling/v1"})
    with pytest.raises(ManifestError, match="No such file"):
        read(tmp_path / "none.yaml")


# -- the manifest in the run: options, plan, controller ------------------------------------

STEP = DATA / "one-pod-per-15s.yaml"
#: An open load that wants 6 replicas of 40 req/s from 3 s to 30 s, then 1 (under the
#: manifest's minimum): a short run shows its scale-up policy and its scale-down window.
STEP_LOAD = ["--load-model", "open", "--load-profile", "0s:20,3s:240,30s:240,31s:20,50s:20",
             "--autoscale-period", "2s"]


def _validate(*args: str):
    parser = argparse.ArgumentParser()
    for flag, dest, kind in (("-u", "num_users", int), ("-r", "spawn_rate", float),
                             ("-t", "run_time", int), ("-H", "host", str)):
        parser.add_argument(flag, dest=dest, type=kind, default=None)
    harness_options.add_arguments(parser)
    return harness_options.validate(parser.parse_args(list(args)), check_dir=False)


@pytest.mark.parametrize("path", [DATA / "team.yaml", STEP,
                                  ROOT / "examples/shop/k8s/base/hpa.yaml"])
def test_the_controller_gets_the_manifest_s_knobs_whole(path):
    """One path: the plan carries the manifest's knobs, and the controller's knobs built
    from the plan are the manifest's, behavior and legacy path included."""
    settings = _validate("--hpa-manifest", str(path)).plan.autoscale
    hpa = read(path)
    assert settings.policy == "hpa" and settings.manifest == str(path)
    assert (settings.metric, settings.min_replicas, settings.max_replicas) == \
        (hpa.metric, hpa.knobs.min_replicas, hpa.knobs.max_replicas)
    assert knobs_for(settings) == hpa.knobs
    json.loads(json.dumps(_validate("--hpa-manifest", str(path)).plan.to_dict(),
                          allow_nan=False))  # run.json's plan stays JSON


def test_flags_build_the_same_structure_with_kubernetes_defaults():
    settings = _validate("--autoscale", "hpa", "--autoscale-target", "50",
                         "--max-replicas", "5", "--scale-down-window", "20s").plan.autoscale
    assert settings.manifest is None
    assert knobs_for(settings) == HpaKnobs(target=50, min_replicas=1, max_replicas=5,
                                           scale_down_window=20)


def test_a_relative_path_is_made_absolute_from_where_the_harness_started(monkeypatch):
    monkeypatch.chdir(ROOT)
    options = _validate("--hpa-manifest", "examples/shop/k8s/base/hpa.yaml")
    assert options.hpa_manifest == str(ROOT / "examples/shop/k8s/base/hpa.yaml")
    assert options.plan.autoscale.behavior.legacy  # no behavior block: the older path


def test_a_shortened_run_shortens_the_policies_too(monkeypatch):
    monkeypatch.setenv(MAX_RUN_TIME_ENV, "10s")
    settings = _validate("--hpa-manifest", str(STEP), *STEP_LOAD).plan.autoscale
    assert settings.behavior.up_policies == (Policy("Pods", 1, 3.0),)  # 15 s × 10/50
    assert settings.scale_down_window == pytest.approx(1.2)


def assert_the_manifest_was_followed(run: dict) -> list[dict]:
    """What STEP asks for, read from a run's record: its knobs in run.json, each decision
    within 2..4 replicas, up by at most one pod per 15 s (held back at least once), and
    the minimum kept when the load wanted fewer."""
    auto = run["plan"]["autoscale"]
    assert auto["manifest"] == str(STEP) and auto["policy"] == "hpa"
    assert (auto["metric"], auto["target"], auto["min_replicas"], auto["max_replicas"]) == \
        ("rps", 40.0, 2, 4)
    assert auto["behavior"]["up_policies"] == [{"kind": "Pods", "value": 1, "period": 15}]
    assert auto["scale_down_window"] == 6 and not auto["behavior"]["legacy"]
    decisions = [e for e in run["stack_events"] if e["event"] == "autoscale_decision"]
    assert decisions and all(2 <= d["final"] <= 4 for d in decisions)
    assert all(d["final"] - d["current"] <= 1 for d in decisions)
    held = [d for d in decisions if d["after_policies"] is not None
            and d["after_policies"] < min(d["stabilized"], 4)]
    assert held and all("behavior policies" in " ".join(d["reasons"]) for d in held)
    ups = [d["t"] for d in decisions if d["final"] > d["current"]]
    assert len(ups) >= 2 and all(b - a >= 14 for a, b in zip(ups, ups[1:])), ups
    asked = [e["level"] for e in run["stack_events"] if e["event"] == "scale_asked"]
    assert asked and all(2 <= level <= 4 for level in asked), asked
    return decisions


def test_an_embedded_run_follows_the_team_s_manifest(tmp_path, no_leftovers):
    run_dir = tmp_path / "run"
    proc = run_locust(["--headless", "--only-summary", "--run-dir", str(run_dir),
                       "--stack-port", str(free_port()), "--api-port", str(free_port()),
                       "--hpa-manifest", str(STEP), *STEP_LOAD], timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2500:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed", run.get("error")
    decisions = assert_the_manifest_was_followed(run)
    # the load fell below one replica's worth: the 6 s window, then the manifest's minimum
    low = [d for d in decisions if d["raw"] is not None and d["raw"] < 2 and d["current"] > 2]
    assert any(d["final"] == 2 for d in low), [(d["current"], d["raw"], d["final"])
                                               for d in decisions]
    ready = [e["level"] for e in run["stack_events"] if e["event"] == "scale_ready"]
    assert ready[0] == 2 and max(ready) >= 3 and ready[-1] == 2, ready
