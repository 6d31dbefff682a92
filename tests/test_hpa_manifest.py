"""A team's HPA manifest read as the simulation's knobs, with Kubernetes' defaults, and
what cannot be simulated refused in one line naming the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from loadtest.autoscale.hpa import Policy
from loadtest.autoscale.hpa_manifest import DEFAULT_DOWN, DEFAULT_UP, ManifestError, parse, read

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
