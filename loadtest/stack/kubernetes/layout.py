"""Where a throwaway cluster keeps each thing, and which addresses it uses.

One frozen value that every other module reads, so a path or an address is
decided in one place. Everything the cluster writes lives under ``workdir``,
except what the kernel keeps machine-wide (interfaces, iptables chains,
cgroups) and the few runtime files that must have short paths (the containerd
socket) or fixed ones (the machine lock), under ``RUN_DIR``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

# Machine-wide: kube-proxy's and the kubelet's iptables chains have fixed names,
# so one throwaway cluster runs on a machine at a time (a lock here says which).
RUN_DIR = Path("/run/scalecheck-kube")
# Interface names (at most 15 characters) and chain names the sweeps recognise.
BRIDGE = "sck-br0"
DUMMY = "sck-node0"
GUARD_CHAIN = "SCALECHECK-KUBE"
CNI_NETWORK = "scalecheck-kube"
# Directories the kubelet and libcni create whatever their settings say (the
# device-plugin socket, container log links, CNI result cache): removed at stop
# when they were not there before.
HOST_DIRS = (Path("/var/lib/kubelet"), Path("/var/lib/cni"), Path("/var/log/containers"),
             Path("/var/log/pods"))
# Longest kubelet root whose sockets still fit in a Unix socket path (108 bytes, less
# "/plugins_registry/<driver>-reg.sock" and similar, with room to spare).
KUBELET_ROOT_MAX = 60
# The cgroup (v1 pids hierarchy) every component joins, so that containerd's
# shims, which leave their parent, can still be found and ended.
TRACKING_CGROUP = "scalecheck-kube"


@dataclass(frozen=True)
class Settings:
    """What a caller may choose; defaults avoid Docker's 172.17/16 and 172.18-31."""

    node_name: str = "scalecheck-node"
    node_ip: str = "10.253.0.1"
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.96.0.0/24"
    # Upstream's default: how often the HPA controller reads metrics and acts.
    hpa_sync_period_s: float = 15.0
    # How often metrics-server scrapes the kubelet (10 s is its minimum).
    metric_resolution_s: float = 15.0
    proxy_mode: str = "iptables"  # or "nftables"
    extra_kubelet_config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        pods = ipaddress.ip_network(self.pod_cidr)
        services = ipaddress.ip_network(self.service_cidr)
        node = ipaddress.ip_address(self.node_ip)
        if pods.overlaps(services) or node in pods or node in services:
            raise ValueError("pod CIDR, service CIDR and node IP must not overlap")
        if self.proxy_mode not in ("iptables", "nftables"):
            raise ValueError(f"proxy_mode must be iptables or nftables, not {self.proxy_mode!r}")
        if self.metric_resolution_s < 10:
            raise ValueError("metrics-server refuses a metric resolution under 10 s")

    @property
    def gateway_ip(self) -> str:
        """The bridge's address: the host's side of the pod network."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def kubernetes_service_ip(self) -> str:
        """The first service address, which the apiserver gives to ``kubernetes``."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))


@dataclass(frozen=True)
class Ports:
    """TCP ports, chosen free at start; all on 127.0.0.1 or the node IP."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    kubelet: int
    kubelet_healthz: int
    metrics_server: int
    proxy_healthz: int
    proxy_metrics: int


@dataclass(frozen=True)
class Layout:
    """Paths under ``workdir`` (and ``RUN_DIR``) for one cluster."""

    workdir: Path

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfigs(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfigs / "admin.conf"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.workdir / "etcd"

    @property
    def containerd(self) -> Path:
        return self.workdir / "containerd"

    @property
    def containerd_root(self) -> Path:
        return self.containerd / "root"

    @property
    def containerd_state(self) -> Path:
        return self.containerd / "state"

    @property
    def containerd_config(self) -> Path:
        return self.containerd / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        # Under /run: a socket path must fit in 108 bytes, and a workdir may be long.
        return RUN_DIR / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.containerd_state / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.workdir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        # The kubelet listens on sockets under its root (pod-resources/kubelet.sock...):
        # a Unix socket's path must fit in 108 bytes, and a run directory (a test's tmp
        # path, reports/<time>/stack/kube) may be long. Under RUN_DIR then, like
        # containerd's socket: both roots are swept, and one cluster runs per machine.
        under = self.workdir / "kubelet"
        return under if len(str(under)) <= KUBELET_ROOT_MAX else RUN_DIR / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.workdir / "kubelet-config.json"

    @property
    def pod_logs(self) -> Path:
        return self.workdir / "pod-logs"

    @property
    def proxy_config(self) -> Path:
        return self.workdir / "kube-proxy-config.json"

    @property
    def images(self) -> Path:
        return self.workdir / "images"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def kubeconfig(self, user: str) -> Path:
        return self.kubeconfigs / f"{user}.conf"

    def owned_paths(self) -> list[Path]:
        """What the cluster writes under ``workdir`` (which may hold other files)."""
        return [self.pki, self.kubeconfigs, self.etcd_data, self.containerd,
                self.workdir / "cni", self.kubelet_root, self.pod_logs, self.images,
                self.workdir / "metrics-server", self.kubelet_config, self.proxy_config]

    def owned_roots(self) -> list[Path]:
        """Trees whose mounts, files and sockets belong to this cluster alone."""
        return [self.workdir, RUN_DIR]
