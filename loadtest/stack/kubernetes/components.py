"""Each component's command line, as a pure function of layout, settings and ports.

Kept apart from starting them, so the flags can be read (and tested) in one
place. Every listening address is 127.0.0.1 or the node IP on the cluster's
own dummy interface; the controller-manager and scheduler serve nothing
(``--secure-port=0``): start() judges them by what they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtest.stack.kubernetes.layout import Layout, Ports, Settings
from loadtest.stack.kubernetes.pki import Credentials


@dataclass(frozen=True)
class Component:
    """One process of the cluster: its name (and log's name) and command."""

    name: str
    argv: list[str]


def _seconds(value: float) -> str:
    return f"{value:g}s"


def etcd(etcd_bin: str, layout: Layout, ports: Ports) -> Component:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return Component("etcd", [
        etcd_bin, "--name", "scalecheck", "--data-dir", str(layout.etcd_data),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"scalecheck={peer}", "--initial-cluster-state", "new",
        "--listen-metrics-urls", "", "--log-level", "warn",
        # a throwaway store: snapshots rarely, keep little history
        "--snapshot-count", "100000", "--auto-compaction-retention", "1",
    ])


def apiserver(kube: Path, settings: Settings, ports: Ports, creds: Credentials) -> Component:
    return Component("kube-apiserver", [
        str(kube), "kube-apiserver",
        # On the node IP (the cluster's own dummy interface): reachable from the
        # host and from pods (the kubernetes Service's endpoint), not from outside.
        "--bind-address", settings.node_ip, "--advertise-address", settings.node_ip,
        "--secure-port", str(ports.apiserver),
        "--etcd-servers", f"http://127.0.0.1:{ports.etcd_client}",
        "--tls-cert-file", str(creds.apiserver.cert),
        "--tls-private-key-file", str(creds.apiserver.key),
        "--client-ca-file", str(creds.ca.cert),
        "--service-account-key-file", str(creds.service_account.cert),
        "--service-account-signing-key-file", str(creds.service_account.key),
        "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
        "--service-cluster-ip-range", settings.service_cidr,
        "--authorization-mode", "Node,RBAC",
        "--enable-admission-plugins", "NodeRestriction",
        "--allow-privileged=true",
        "--kubelet-client-certificate", str(creds.apiserver_kubelet_client.cert),
        "--kubelet-client-key", str(creds.apiserver_kubelet_client.key),
        "--kubelet-certificate-authority", str(creds.ca.cert),
        "--kubelet-preferred-address-types", "InternalIP",
        # The aggregation layer (metrics.k8s.io): the front proxy's identity,
        # and routing to an APIService's endpoint IP rather than its ClusterIP,
        # so the metrics API does not depend on kube-proxy.
        "--proxy-client-cert-file", str(creds.front_proxy_client.cert),
        "--proxy-client-key-file", str(creds.front_proxy_client.key),
        "--requestheader-client-ca-file", str(creds.front_proxy_ca.cert),
        "--requestheader-allowed-names", "front-proxy-client",
        "--requestheader-username-headers", "X-Remote-User",
        "--requestheader-group-headers", "X-Remote-Group",
        "--requestheader-extra-headers-prefix", "X-Remote-Extra-",
        "--enable-aggregator-routing=true",
        "--profiling=false",
        "--v=1",
    ])


def controller_manager(kube: Path, settings: Settings, creds: Credentials) -> Component:
    kubeconfig = str(creds.kubeconfigs["controller-manager"])
    return Component("kube-controller-manager", [
        str(kube), "kube-controller-manager",
        "--kubeconfig", kubeconfig,
        "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
        "--secure-port", "0", "--leader-elect=false",
        "--use-service-account-credentials=true",
        "--service-account-private-key-file", str(creds.service_account.key),
        "--root-ca-file", str(creds.ca.cert),
        "--cluster-signing-cert-file", str(creds.ca.cert),
        "--cluster-signing-key-file", str(creds.ca.key),
        "--service-cluster-ip-range", settings.service_cidr,
        "--allocate-node-cidrs=true", "--cluster-cidr", settings.pod_cidr,
        "--node-cidr-mask-size", settings.pod_cidr.split("/")[1],
        "--horizontal-pod-autoscaler-sync-period", _seconds(settings.hpa_sync_period_s),
        "--profiling=false",
    ])


def scheduler(kube: Path, creds: Credentials) -> Component:
    kubeconfig = str(creds.kubeconfigs["scheduler"])
    return Component("kube-scheduler", [
        str(kube), "kube-scheduler",
        "--kubeconfig", kubeconfig,
        "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
        "--secure-port", "0", "--leader-elect=false", "--profiling=false",
    ])


def containerd(layout: Layout) -> Component:
    return Component("containerd", ["containerd", "--config", str(layout.containerd_config)])


def kubelet(kube: Path, layout: Layout, settings: Settings, creds: Credentials) -> Component:
    return Component("kubelet", [
        str(kube), "kubelet",
        "--config", str(layout.kubelet_config),
        "--kubeconfig", str(creds.kubeconfigs["kubelet"]),
        "--root-dir", str(layout.kubelet_root),
        "--cert-dir", str(layout.kubelet_root / "pki"),
        "--hostname-override", settings.node_name,
        "--node-ip", settings.node_ip,
        "--v=1",
    ])


def proxy(kube: Path, layout: Layout) -> Component:
    return Component("kube-proxy", [str(kube), "kube-proxy", "--config", str(layout.proxy_config)])


def cluster_dns(kube: Path, settings: Settings, creds: Credentials) -> Component:
    """Our DNS for Services (kube cluster-dns, in the multicall binary), on the
    node IP's port 53, where the kubelet points pods (clusterDNS). It reads
    Services and EndpointSlices as kube-proxy does, so it uses kube-proxy's
    identity (system:node-proxier may list and watch both)."""
    return Component("cluster-dns", [
        str(kube), "cluster-dns", "--kubeconfig", str(creds.kubeconfigs["kube-proxy"]),
        "--listen", f"{settings.node_ip}:53", "--cluster-domain", "cluster.local",
    ])


def metrics_server(kube: Path, settings: Settings, ports: Ports,
                   creds: Credentials, cert_dir: Path) -> Component:
    kubeconfig = str(creds.kubeconfigs["metrics-server"])
    return Component("metrics-server", [
        str(kube), "metrics-server",
        "--kubeconfig", kubeconfig,
        "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
        # On the node IP: the APIService's endpoint (an Endpoints address may not
        # be a loopback one).
        "--bind-address", settings.node_ip, "--secure-port", str(ports.metrics_server),
        "--cert-dir", str(cert_dir),
        "--tls-cert-file", str(creds.metrics_server_serving.cert),
        "--tls-private-key-file", str(creds.metrics_server_serving.key),
        "--kubelet-preferred-address-types", "InternalIP",
        "--kubelet-use-node-status-port",
        "--kubelet-certificate-authority", str(creds.ca.cert),
        "--metric-resolution", _seconds(settings.metric_resolution_s),
        # must stay under the resolution; the kubelet is local and answers in ms
        "--kubelet-request-timeout", "5s",
        "--profiling=false",
    ])
