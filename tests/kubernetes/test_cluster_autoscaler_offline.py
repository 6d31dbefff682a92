"""--autoscale cluster, offline: which HPA the cluster runs, how the applied copy carries
it, what the harness reads of its status (the options it refuses are in
tests/test_bad_input.py, with every other refusal)."""

from __future__ import annotations

import pytest

from loadtest.autoscale.cluster import decision_details, report_key
from loadtest.stack.kubernetes import applied, hpa, sources, workload
from loadtest.stack.kubernetes.backend import DEFAULT_MANIFESTS
from tests.conftest import ROOT

SHOP_BASE = ROOT / "examples" / "shop" / "k8s" / "base"

STATUS = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "shop"},
    "spec": {"minReplicas": 2, "maxReplicas": 6,
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}},
    "status": {
        "currentReplicas": 2, "desiredReplicas": 4, "lastScaleTime": "2026-12-06T06:00:00Z",
        "currentMetrics": [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": 143, "averageValue": "143m"}}}],
        "conditions": [
            {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"},
            {"type": "ScalingLimited", "status": "True", "reason": "ScaleUpLimit",
             "message": "the desired replica count is increasing faster than the maximum "
                        "scale rate"}]},
}


def test_the_team_s_hpa_is_kept_and_said_so():
    objects = sources.read(SHOP_BASE)
    chosen = hpa.team_hpa(objects, "shop")
    assert chosen is not None and workload.name_of(chosen) == "shop"
    copy = applied.prepare(objects, "run-ns", "shop", 2, False, lambda _: True, hpa=chosen)
    kept = [o for o in copy.objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert [o["metadata"]["namespace"] for o in kept] == ["run-ns"]
    assert kept[0]["spec"] == chosen["spec"]  # unchanged, only moved
    assert copy.held_back == []
    assert any("HorizontalPodAutoscaler/shop kept" in c for c in copy.changes)
    # without --autoscale cluster the same HPA is held back
    plain = applied.prepare(objects, "run-ns", "shop", 2, False, lambda _: True)
    assert not [o for o in plain.objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert plain.held_back


def test_an_hpa_from_the_flags_when_the_manifests_have_none():
    objects = sources.read(DEFAULT_MANIFESTS)
    assert hpa.team_hpa(objects, "hello") is None
    written = hpa.written_hpa("hello", 50, 1, 4)
    hpa.check_cpu_requests(written, workload.deployment(objects, "hello"))
    copy = applied.prepare(objects, "ns", "hello", 1, False, lambda _: True, hpa=written)
    added = [o for o in copy.objects if o["kind"] == "HorizontalPodAutoscaler"]
    assert added[0]["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    assert added[0]["spec"]["scaleTargetRef"]["name"] == "hello"
    assert any("added from the --autoscale-* flags" in c for c in copy.changes)


def test_a_cpu_hpa_over_a_container_without_a_cpu_request_is_refused():
    dep = workload.deployment(sources.read(DEFAULT_MANIFESTS), "hello")
    for container in workload.containers(workload.pod_spec(dep)):
        container.get("resources", {}).get("requests", {}).pop("cpu", None)
    with pytest.raises(sources.ManifestError, match="no resources.requests.cpu"):
        hpa.check_cpu_requests(hpa.written_hpa("hello", 50, 1, 4), dep)


def test_what_the_controller_reports_becomes_a_decision():
    status = hpa.reported(STATUS)
    assert (status["desired"], status["current"]) == (4, 2)
    assert status["metrics"] == [{"type": "Resource", "name": "cpu", "utilization": 143,
                                  "average_value": "143m"}]
    status["pods"] = hpa.pods_cpu({"items": [
        {"metadata": {"name": "shop-b"}, "containers": [{"usage": {"cpu": "150000000n"}}]},
        {"metadata": {"name": "shop-a"}, "containers": [{"usage": {"cpu": "136m"}},
                                                        {"usage": {"cpu": "1500u"}}]}]},
        100.0)
    assert [(p["pod"], p["cpu_used_m"]) for p in status["pods"]] == [("shop-a", 137.5),
                                                                       ("shop-b", 150.0)]
    details = decision_details(status)
    assert details["final"] == 4 and details["scaling_limited"] == "ScaleUpLimit"
    assert details["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    # the pods' CPU moving is not a new report; a new metric value is
    moved = {**status, "pods": []}
    assert report_key(moved) == report_key(status)
    status2 = hpa.reported({**STATUS, "status": {**STATUS["status"], "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 90}}}]}})
    assert report_key(status2) != report_key(status)


def test_no_status_yet_is_nothing_reported():
    assert hpa.reported({"spec": {}, "status": {}})["desired"] is None


def test_the_pod_s_cpu_request_in_millicores():
    dep = workload.deployment(sources.read(SHOP_BASE), "shop")
    assert hpa.cpu_request_milli(dep) == 100.0


def test_the_manifests_hpa_is_the_plan_s(tmp_path):
    """The plan records the HPA the cluster will run: its min, max, metric and target."""
    from loadtest.harness import options as harness_options
    from tests.test_bad_input import _parser

    parsed = _parser().parse_args(["--stack", "kubernetes", "--autoscale", "cluster",
                                   "--kube-manifests", str(SHOP_BASE), "--run-dir",
                                   str(tmp_path / "r")])
    scaler = harness_options.validate(parsed, check_dir=False).plan.autoscale
    assert (scaler.policy, scaler.metric, scaler.target) == ("cluster", "cpu", 70.0)
    assert (scaler.min_replicas, scaler.max_replicas) == (2, 6)
