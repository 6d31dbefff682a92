"""metrics-server as a host process, registered as the ``metrics.k8s.io`` API.

The aggregation layer reaches an APIService through a Service; metrics-server
runs on the host (no image to build, no pod to schedule), so its Service has
no selector and a hand-written Endpoints object pointing at the node IP, where
it listens. (An Endpoints address may not be a loopback one.) The apiserver
routes to that endpoint directly (``--enable-aggregator-routing``).
"""

from __future__ import annotations

import base64
from pathlib import Path

from loadtest.stack.kubernetes.api import Api

NAMESPACE = "kube-system"
NAME = "metrics-server"
APISERVICE = "v1beta1.metrics.k8s.io"


def register(api: Api, node_ip: str, port: int, ca: Path) -> bool:
    """Create the Service, its Endpoints and the APIService (idempotent: start()
    retries it until the apiserver takes all three)."""
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": {"k8s-app": NAME}}
    api.create(f"/api/v1/namespaces/{NAMESPACE}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port,
                            "protocol": "TCP"}]}})
    api.create(f"/api/v1/namespaces/{NAMESPACE}/endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
        "subsets": [{"addresses": [{"ip": node_ip}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})
    api.create("/apis/apiregistration.k8s.io/v1/apiservices", {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": APISERVICE, "labels": {"k8s-app": NAME}},
        "spec": {"service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                 "group": "metrics.k8s.io", "version": "v1beta1",
                 "caBundle": base64.b64encode(ca.read_bytes()).decode(),
                 "groupPriorityMinimum": 100, "versionPriority": 100}})
    return True


def available(api: Api) -> bool:
    """The APIService says Available and the metrics API lists nodes."""
    status = api.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}").get(
        "status", {})
    if not any(c.get("type") == "Available" and c.get("status") == "True"
               for c in status.get("conditions", [])):
        return False
    return api.ok("/apis/metrics.k8s.io/v1beta1/nodes")
