"""A real throwaway cluster, used as the harness will use it.

One Deployment of our tiny image (a static Go HTTP server packaged as an OCI
archive here, no Docker), reached from the host at its pod IP, scaled through
the ``scale`` subresource with the EndpointSlice following, its CPU read from
metrics.k8s.io and by an HPA; then the cluster is stopped and nothing of it may
remain on the host. The tests run in order and share the one cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest
from kubernetes import client, config

from loadtest.stack.kubernetes import dns, images
from tests.kubernetes.conftest import skip_or_fail

pytestmark = pytest.mark.kubernetes
NAMESPACE = "scalecheck-test"
APP = "hello"


def wait(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (client.ApiException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def api(cluster):
    return config.new_client_from_config(str(cluster.kubeconfig))


@pytest.fixture(scope="module")
def deployment(cluster, api):
    """Our hello image, a namespace, a Deployment (1 replica) and a Service."""
    cluster.load_program_image(images.HELLO_IMAGE, cluster.bins.hello)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    wait(lambda: core.read_namespaced_service_account("default", NAMESPACE), 30,
         "the namespace's default ServiceAccount")
    labels = {"app": APP}
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    apps.create_namespaced_deployment(NAMESPACE, {
        "metadata": {"name": APP, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": APP, "image": images.HELLO_IMAGE, "imagePullPolicy": "Never",
                "env": env, "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080},
                                   "periodSeconds": 1},
                "resources": {"requests": {"cpu": "100m", "memory": "16Mi"},
                              "limits": {"cpu": "500m", "memory": "64Mi"}}}]}}}})
    core.create_namespaced_service(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})
    return APP


def ready_pods(api) -> list:
    pods = client.CoreV1Api(api).list_namespaced_pod(NAMESPACE, label_selector=f"app={APP}")
    return [p for p in pods.items if p.status.pod_ip and not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True"
                    for c in (p.status.conditions or []))]


def ready_endpoint_ips(api) -> set[str]:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        NAMESPACE, label_selector=f"kubernetes.io/service-name={APP}")
    return {address for s in slices.items for e in (s.endpoints or [])
            if e.conditions and e.conditions.ready for address in e.addresses}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a pod IP of ours
        return json.loads(response.read())


def test_node_is_ready_and_metrics_api_answers(cluster, api):
    node = client.CoreV1Api(api).read_node(cluster.settings.node_name)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert node.status.node_info.kubelet_version == "v1.34.4"
    listing = client.CustomObjectsApi(api).list_cluster_custom_object(
        "metrics.k8s.io", "v1beta1", "nodes")
    assert listing["kind"] == "NodeMetricsList"
    print(f"\ncluster start timings (s): {cluster.timings}")


def test_pod_answers_on_its_ip_from_the_host(api, deployment):
    started = time.monotonic()
    pods = wait(lambda: ready_pods(api), 90, "a ready hello pod")
    pod = pods[0]
    answer = get_json(f"http://{pod.status.pod_ip}:8080/")
    assert answer["pod"] == pod.metadata.name
    assert answer["ip"] == pod.status.pod_ip
    print(f"\npod {pod.metadata.name} at {pod.status.pod_ip} answered "
          f"{time.monotonic() - started:.1f} s after the Deployment was created")


def test_scale_subresource_and_endpointslice_follow(api, deployment):
    apps = client.AppsV1Api(api)
    for replicas in (3, 1):
        started = time.monotonic()
        apps.patch_namespaced_deployment_scale(APP, NAMESPACE, {"spec": {"replicas": replicas}})
        ips = wait(lambda r=replicas: (lambda s: s if len(s) == r else None)(
            ready_endpoint_ips(api)), 90, f"{replicas} ready endpoints")
        assert ips == {p.status.pod_ip for p in ready_pods(api)}
        for ip in ips:  # each endpoint is a pod that answers, as itself
            assert get_json(f"http://{ip}:8080/")["ip"] == ip
        print(f"\nscaled to {replicas}: EndpointSlice followed in "
              f"{time.monotonic() - started:.1f} s")
    scale = apps.read_namespaced_deployment_scale(APP, NAMESPACE)
    assert scale.spec.replicas == 1


def test_service_cluster_ip_answers_from_the_host(api, deployment):
    """kube-proxy's rules (iptables or nftables mode) take the host to a pod."""
    service = client.CoreV1Api(api).read_namespaced_service(APP, NAMESPACE)
    ip = service.spec.cluster_ip

    def answer_from_a_ready_endpoint():
        # kube-proxy follows the EndpointSlice within its sync: a pod just
        # scaled away may still answer for a moment
        answer = get_json(f"http://{ip}:80/")
        return answer if answer["ip"] in ready_endpoint_ips(api) else None

    wait(answer_from_a_ready_endpoint, 30, f"the Service at {ip}", interval=0.5)


def test_pods_find_services_by_name(cluster, api, deployment):
    """The cluster's DNS: a pod resolves a Service by its short name, as apps do."""
    service_ip = client.CoreV1Api(api).read_namespaced_service(APP, NAMESPACE).spec.cluster_ip
    pod_ip = wait(lambda: ready_pods(api), 60, "a ready pod")[0].status.pod_ip
    answer = wait(lambda: get_json(f"http://{pod_ip}:8080/resolve?name={APP}"), 20,
                  "the pod resolving the Service's name")
    assert answer["addresses"] == [service_ip]
    assert dns.resolve(cluster.settings.node_ip,
                       f"{APP}.{NAMESPACE}.svc.cluster.local") == [service_ip]
    assert dns.resolve(cluster.settings.node_ip, "nothing.example") == []


def test_metrics_api_reports_pod_cpu(api, deployment):
    metrics = client.CustomObjectsApi(api)

    def pod_cpu():
        items = metrics.list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", NAMESPACE, "pods")["items"]
        return [c["usage"]["cpu"] for item in items for c in item["containers"]]

    started = time.monotonic()
    usage = wait(pod_cpu, 90, "pod CPU in metrics.k8s.io", interval=2)
    print(f"\npod CPU {usage} read {time.monotonic() - started:.1f} s after asking")


def test_hpa_reads_cpu(api, deployment):
    pod_ip = wait(lambda: ready_pods(api), 60, "a ready pod")[0].status.pod_ip
    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                 "minReplicas": 1, "maxReplicas": 2,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": 50}}}]}})
    started = time.monotonic()

    def current_cpu():
        # some CPU for the HPA to see: 100 ms of work per request, bounded
        get_json(f"http://{pod_ip}:8080/burn?ms=100")
        hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
            APP, NAMESPACE)
        for metric in hpa.status.current_metrics or []:
            if metric.resource and metric.resource.name == "cpu":
                return metric.resource.current
        return None

    current = wait(current_cpu, 120, "the HPA's current CPU", interval=1)
    assert current.average_utilization is not None
    print(f"\nHPA saw CPU {current.average_utilization}% ({current.average_value}) "
          f"{time.monotonic() - started:.1f} s after its creation")

    def scaled_up():
        # 300 ms of CPU a second is 300 % of the 100m request: over the 50 % target
        get_json(f"http://{pod_ip}:8080/burn?ms=300")
        hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
            APP, NAMESPACE)
        return hpa if (hpa.status.desired_replicas or 0) >= 2 else None

    hpa = wait(scaled_up, 120, "the HPA scaling up on CPU", interval=0.7)
    cpu = next(m.resource.current for m in hpa.status.current_metrics if m.resource)
    print(f"HPA asked for {hpa.status.desired_replicas} replicas at CPU "
          f"{cpu.average_utilization}%, {time.monotonic() - started:.1f} s after its creation")


def test_docker_image_runs_in_the_cluster(cluster, api, tmp_path):
    """An image Docker has reaches the cluster by docker save -> ctr import.

    Starting dockerd (when none runs) while the cluster runs also checks that
    Docker's iptables rules and kube-proxy's live side by side."""
    from tests.docker_engine import Engine

    engine = Engine()
    if not engine.start():
        skip_or_fail(engine.reason or "no Docker Engine")
    name, tag = "scalecheck/kube-hello", "docker"
    try:
        (tmp_path / "hello").write_bytes(cluster.bins.hello.read_bytes())
        (tmp_path / "hello").chmod(0o755)
        tar = subprocess.run(["tar", "-C", str(tmp_path), "-c", "hello"], capture_output=True,
                             check=True).stdout
        subprocess.run(["docker", "import", "-c", 'ENTRYPOINT ["/hello"]', "-", f"{name}:{tag}"],
                       input=tar, capture_output=True, check=True, timeout=120)
        started = time.monotonic()
        cluster.load_docker_image(f"{name}:{tag}")
        loaded = time.monotonic() - started
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{name}:{tag}"], capture_output=True,
                       timeout=60)
        engine.stop()
    assert f"docker.io/{name}:{tag}" in images.image_names(cluster.containerd_socket)
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": "from-docker"},
        "spec": {"containers": [{"name": "hello", "image": f"{name}:{tag}",
                                 "imagePullPolicy": "Never"}]}})

    def pod_ip():
        pod = core.read_namespaced_pod("from-docker", NAMESPACE)
        return pod.status.pod_ip if pod.status.phase == "Running" else None

    ip = wait(pod_ip, 60, "the pod of the Docker image running")
    assert wait(lambda: get_json(f"http://{ip}:8080/"), 20, "its answer")["hostname"]
    print(f"\ndocker save -> import took {loaded:.1f} s; its pod answered at {ip}")


def test_an_image_pull_never_leaves_the_machine(cluster, api, deployment):
    """A :latest image is pulled by default (imagePullPolicy Always), even when
    present: containerd's pulls go to a closed port on 127.0.0.1, never out."""
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": "pulls"},
        "spec": {"containers": [{"name": "h", "image": "scalecheck.local/hello:latest"}]}})

    def pull_error():
        statuses = core.read_namespaced_pod("pulls", NAMESPACE).status.container_statuses
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.message if waiting and waiting.message else None

    message = wait(pull_error, 60, "the pull's error")
    assert "127.0.0.1:9" in message, message
    core.delete_namespaced_pod("pulls", NAMESPACE, grace_period_seconds=0)


def test_outside_the_machine_cannot_reach_the_cluster(cluster, deployment, api):
    """The guard: a neighbour routing the node IP or a pod IP to this machine gets
    nothing, though Linux would accept a packet for any local address on any
    interface. The neighbour is a network namespace of ours behind a veth."""
    ns, host_end, ns_end = "sck-outside", "sck-out0", "sck-out1"
    pod_ip = wait(lambda: ready_pods(api), 60, "a ready pod")[0].status.pod_ip

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)

    def reachable_from_outside(ip: str, port: int) -> bool:
        probe = f"import socket; socket.create_connection(('{ip}', {port}), timeout=2)"
        return run("ip", "netns", "exec", ns, sys.executable, "-c", probe).returncode == 0

    try:
        for argv in (["ip", "netns", "add", ns],
                     ["ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end],
                     ["ip", "link", "set", ns_end, "netns", ns],
                     ["ip", "addr", "add", "10.252.255.1/30", "dev", host_end],
                     ["ip", "link", "set", host_end, "up"],
                     ["ip", "netns", "exec", ns, "ip", "addr", "add", "10.252.255.2/30",
                      "dev", ns_end],
                     ["ip", "netns", "exec", ns, "ip", "link", "set", ns_end, "up"],
                     ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
                     ["ip", "netns", "exec", ns, "ip", "route", "add", "default",
                      "via", "10.252.255.1"]):
            assert run(*argv).returncode == 0, argv
        assert not reachable_from_outside(cluster.settings.node_ip, cluster.ports.apiserver)
        assert not reachable_from_outside(pod_ip, 8080)
        # ... while the host itself reaches both
        assert get_json(f"http://{pod_ip}:8080/")["ip"] == pod_ip
        # and a pod reaches nothing outside the cluster: not the neighbour...
        listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                     "import socket, time; s = socket.create_server("
                                     "('10.252.255.2', 8099)); time.sleep(60)"])
        try:
            time.sleep(0.5)
            assert run("ip", "netns", "exec", ns, sys.executable, "-c",
                       "import socket; socket.create_connection(('10.252.255.2', 8099), 2)"
                       ).returncode == 0, "the neighbour's listener is up"
            answer = get_json(f"http://{pod_ip}:8080/connect?addr=10.252.255.2:8099")
            assert not answer["connected"], answer
        finally:
            listener.kill()
            listener.wait(10)
        # ...while it does reach the node (the apiserver) and its Service
        node = f"{cluster.settings.node_ip}:{cluster.ports.apiserver}"
        assert get_json(f"http://{pod_ip}:8080/connect?addr={node}")["connected"]
    finally:
        run("ip", "link", "delete", host_end)
        run("ip", "netns", "delete", ns)


def test_stop_leaves_nothing_behind(cluster):
    started = time.monotonic()
    left = cluster.stop()
    print(f"\nstopped in {time.monotonic() - started:.1f} s ({cluster.timings})")
    assert left == [], left
    assert cluster.leftovers() == []
