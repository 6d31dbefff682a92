"""The team's manifests as the harness reads them, and the copy it applies: offline, no
cluster. What is read is what ``kubectl apply -f`` / ``-k`` would apply; the copy differs
only where the run needs it, and says so."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from loadtest.stack.kubernetes import applied, sources, workload
from loadtest.stack.kubernetes.backend import DEFAULT_MANIFESTS
from loadtest.stack.kubernetes.runtime import normalize
from loadtest.stack.kubernetes.tracker import Tracker
from tests.conftest import ROOT

SHOP = ROOT / "examples" / "shop" / "k8s"


def test_default_manifests_are_the_hello_app_and_redis():
    objects = sources.read(DEFAULT_MANIFESTS)
    dep = workload.deployment(objects, "hello")
    service = workload.service_for(objects, dep)
    assert workload.name_of(service) == "hello"
    assert workload.service_port(service, None) == workload.Port("http", "http")
    assert workload.name_of(workload.store_service(objects, "redis")) == "redis"
    assert workload.images(objects) == ["scalecheck/hello:latest", "redis:7-alpine"]
    # the Service named redis must not put REDIS_PORT=tcp://... into the app's pods
    assert workload.pod_spec(dep)["enableServiceLinks"] is False


def test_a_folder_reads_its_yaml_files_in_name_order(tmp_path):
    text = DEFAULT_MANIFESTS.read_text().split("\n---\n")
    (tmp_path / "b.yaml").write_text("\n---\n".join(text[2:]))
    (tmp_path / "a.yml").write_text("\n---\n".join(text[:2]))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("kind: Nope")  # subfolders are not read
    kinds = [(o["kind"], workload.name_of(o)) for o in sources.read(tmp_path)]
    assert kinds == [("Deployment", "hello"), ("Service", "hello"), ("Deployment", "redis"),
                     ("Service", "redis")]


def need_kubectl() -> None:
    """kustomize renders with kubectl (make kube-build makes one): missing, the test skips
    saying so, and fails under CI."""
    from tests.conftest import need

    try:
        sources.kubectl()
    except sources.ManifestError as exc:
        need("kubectl", str(exc))


def test_the_shop_base_and_its_overlay_through_kustomize():
    need_kubectl()
    base = sources.read(SHOP / "base")
    shop = workload.deployment(base, "shop")
    container = workload.pod_spec(shop)["containers"][0]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] == "100m"
    assert {o["kind"] for o in base} == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    overlay = sources.read(SHOP / "overlays" / "no-prestop")
    bare = workload.pod_spec(workload.deployment(overlay, "shop"))["containers"][0]
    assert "lifecycle" not in bare
    assert {k: v for k, v in container.items() if k != "lifecycle"} == bare


@pytest.mark.parametrize(("text", "said"), [
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x\n", "does not parse as YAML"),
    ("- just\n- a list\n", "is not a Kubernetes object"),
    ("kind: Service\nmetadata: {name: x}\n", "has no apiVersion"),
    ("# nothing\n", "holds no Kubernetes object"),
])
def test_what_does_not_read_is_one_line(tmp_path, text, said):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(sources.ManifestError) as exc:
        sources.read(path)
    assert said in str(exc.value) and "\n" not in str(exc.value)


def test_which_deployment():
    objects = sources.read(DEFAULT_MANIFESTS)
    with pytest.raises(sources.ManifestError, match="several Deployments .hello, redis."):
        workload.deployment(objects, None)
    with pytest.raises(sources.ManifestError, match="no Deployment of that name"):
        workload.deployment(objects, "web")
    lone = [o for o in objects if workload.name_of(o) == "hello"]
    assert workload.name_of(workload.deployment(lone, None)) == "hello"
    with pytest.raises(sources.ManifestError, match="no Service in the manifests selects"):
        workload.service_for([lone[0]], lone[0])
    with pytest.raises(sources.ManifestError, match="cluster-scoped"):
        workload.check_scope([{"apiVersion": "rbac.authorization.k8s.io/v1",
                               "kind": "ClusterRole", "metadata": {"name": "x"}}])


def test_the_copy_changes_only_what_it_says():
    need_kubectl()
    base = sources.read(SHOP / "base")
    before = copy.deepcopy(base)
    local = {"scalecheck/shop:latest", "scalecheck/base:bookworm"}
    out = applied.prepare(base, "run-ns", "shop", 3, True, lambda image: image in local)
    assert base == before  # the team's objects are not touched
    assert {o["metadata"]["namespace"] for o in out.objects} == {"run-ns"}
    assert [o["kind"] for o in out.objects].count("HorizontalPodAutoscaler") == 0
    assert out.held_back == ["HorizontalPodAutoscaler/shop (the plan sets the replica count; "
                             "two controllers on one scale subresource fight)"]
    shop = workload.deployment(out.objects, "shop")
    assert shop["spec"]["replicas"] == 3
    container = workload.pod_spec(shop)["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"  # :latest, no policy: Always
    cache = workload.pod_spec(workload.deployment(out.objects, "cache"))["containers"][0]
    assert cache["image"] == "scalecheck/base:bookworm"  # redis:7-alpine is nowhere here
    assert len(out.changes) == 3 and all("\n" not in c for c in out.changes)
    assert "held back HorizontalPodAutoscaler/shop" in out.summary()
    # on a cluster that pulls its own images, only the namespace and the level change
    out = applied.prepare(base, "run-ns", "shop", 2, False, lambda image: False)
    assert out.changes == []
    assert workload.pod_spec(workload.deployment(out.objects, "shop"))["containers"][0] \
        .get("imagePullPolicy") is None


@pytest.mark.parametrize(("image", "ref", "repo", "tag"), [
    ("redis", "docker.io/library/redis:latest", "redis", "latest"),
    ("redis:7-alpine", "docker.io/library/redis:7-alpine", "redis", "7-alpine"),
    ("scalecheck/hello:latest", "docker.io/scalecheck/hello:latest", "scalecheck/hello",
     "latest"),
    ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app", "latest"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause",
     "3.10"),
])
def test_image_names(image, ref, repo, tag):
    assert normalize(image) == ref
    assert applied.repository(image) == repo
    assert applied.tag(image) == tag


def _pod(name, *, ready=True, ip="10.244.0.9", deleting=None, statuses=()):
    meta = {"name": name, "labels": {"app": "hello"}}
    if deleting:
        meta.update(deletionTimestamp=deleting, deletionGracePeriodSeconds=30)
    return {"metadata": meta, "status": {
        "podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": list(statuses)}}


def _slice(*endpoints):
    return {"metadata": {"name": "hello-abc"}, "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready},
                           "targetRef": {"kind": "Pod", "name": name}}
                          for name, ip, ready in endpoints]}


def test_the_tracker_turns_pods_and_slices_into_the_runs_events():
    """Routed when the slice says ready; a death is a container seen running that ends
    while its pod is not terminating; a removal carries its three times."""
    events = []

    def note(name, t=None, /, **payload):
        events.append({"t": t, "event": name, **payload})
        return events[-1]

    tracker = Tracker({"app": "hello"}, None, workload.Port("http", "http"), note,
                      lambda part, t: False)
    running = {"name": "hello", "containerID": "containerd://a", "restartCount": 0,
               "state": {"running": {}}}
    tracker.on_pod("ADDED", _pod("hello-1", statuses=[running]), 1.0)
    tracker.on_slice("ADDED", _slice(("hello-1", "10.244.0.9", True)), 1.1)
    assert tracker.routable() == {"hello-1": "10.244.0.9:8000"}
    tracker.routed("hello-1", 1.2)
    # SIGKILLed: the kubelet starts a new container in the same pod
    restarted = {**running, "containerID": "containerd://b", "restartCount": 1,
                 "lastState": {"terminated": {"containerID": "containerd://a",
                                              "exitCode": 137, "reason": "Error"}}}
    tracker.on_pod("MODIFIED", _pod("hello-1", ready=False, statuses=[restarted]), 2.0)
    tracker.on_pod("MODIFIED", _pod("hello-1", statuses=[restarted]), 2.1)  # said once
    died = [e for e in events if e["event"] == "replica_died"]
    assert died == [{"t": 2.0, "event": "replica_died", "hostname": "hello-1",
                     "returncode": 137, "reason": "Error", "signal": 9,
                     "container": "hello", "restarts": 1, "finished_at": None,
                     "noticed": 2.0}]
    # scaled away: terminating, out of the slice, out of the balancer, deleted
    tracker.on_pod("MODIFIED", _pod("hello-1", deleting="2030-01-01T00:00:30Z",
                                    statuses=[restarted]), 3.0)
    tracker.on_slice("MODIFIED", _slice(("hello-1", "10.244.0.9", False)), 3.1)
    assert tracker.routable() == {}
    tracker.unrouted("hello-1", 3.3)
    tracker.on_pod("DELETED", _pod("hello-1", deleting="2030-01-01T00:00:30Z"), 4.0)
    removing = next(e for e in events if e["event"] == "replica_removing")
    assert removing["t"] == 3.3 and removing["unrouted_at"] == 3.3
    assert removing["noticed_terminating"] == 3.0 and removing["left_endpoints_at"] == 3.1
    assert removing["terminating_at"] == 1893456000.0  # deletionTimestamp less its grace
    assert [e["event"] for e in events] == ["replica_died", "replica_removing",
                                            "replica_removed"]
    assert tracker.app_pods() == []


def test_a_pod_that_cannot_start_is_said_at_once():
    tracker = Tracker({"app": "hello"}, None, workload.Port("", 8000),
                      lambda *a, **k: {}, lambda part, t: False)
    waiting = {"name": "hello", "restartCount": 0, "state": {"waiting": {
        "reason": "ErrImageNeverPull", "message": "image is not present with pull policy"}}}
    tracker.on_pod("ADDED", _pod("hello-2", ready=False, statuses=[waiting]), 1.0)
    assert tracker.stuck() == ("pod hello-2 (container hello) cannot start: "
                               "ErrImageNeverPull: image is not present with pull policy")


def test_the_backend_module_imports_no_kubernetes_client():
    """Every backend's options are listed at each start: importing must stay cheap."""
    import subprocess
    import sys

    code = ("import sys; import loadtest.stack.kubernetes.backend; "
            "print(any(m == 'kubernetes' or m.startswith('kubernetes.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(ROOT), timeout=60)
    assert out.stdout.strip() == "False", out.stderr
