"""The configuration files of containerd, the CNI network, the kubelet and kube-proxy.

Pure functions from the layout and settings to text: each setting that differs
from upstream's default says why next to it. Kubernetes reads JSON wherever it
reads YAML, so the component configs are written with ``json``.
"""

from __future__ import annotations

import json

from loadtest.stack.kubernetes.images import PAUSE_IMAGE
from loadtest.stack.kubernetes.layout import BRIDGE, CNI_NETWORK, Layout, Ports, Settings
from loadtest.stack.kubernetes.pki import Credentials

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins


def _toml_str(value: object) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def containerd_config(layout: Layout) -> str:
    """A containerd of the cluster's own, apart from Docker's and the system's.

    Every path it would otherwise share with another containerd (root, state,
    socket, runc's state, /opt/containerd, the pods' network namespaces) is
    moved under the cluster's directories; its metrics, debug and TCP servers
    stay off; only the CRI's streaming server listens, on 127.0.0.1."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2",
        f"root = {_toml_str(layout.containerd_root)}",
        f"state = {_toml_str(layout.containerd_state)}",
        "disabled_plugins = [",
        '  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",',
        '  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",',
        '  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",',
        ']',
        "[grpc]",
        f"  address = {_toml_str(layout.containerd_socket)}",
        "[ttrpc]",
        '  address = ""',
        "[debug]",
        '  address = ""',
        '  level = "info"',
        "[metrics]",
        '  address = ""',
        '[plugins."io.containerd.internal.v1.opt"]',
        f"  path = {_toml_str(layout.containerd_root / 'opt')}",
        f"[{cri}]",
        f"  sandbox_image = {_toml_str(PAUSE_IMAGE)}",
        # network namespaces under the state dir, not /var/run/netns
        "  netns_mounts_under_state_dir = true",
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        "  disable_tcp_service = true",
        "  enable_selinux = false",
        "  disable_apparmor = true",
        "  tolerate_missing_hugetlb_controller = true",
        "  disable_hugetlb_controller = true",
        # These machines' capability bounding set lacks CAP_SYS_RESOURCE, so no
        # process may lower an oom_score_adj below its own: the kubelet's -998
        # for sandboxes failed in runc ("can't get final child's PID from
        # pipe"). Clamp containers' scores to containerd's own (0) instead.
        "  restrict_oom_score_adj = true",
        f"[{cri}.containerd]",
        '  snapshotter = "overlayfs"',
        '  default_runtime_name = "runc"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        # PID 1 is not systemd here: the kubelet's cgroupfs driver, and runc's too.
        "  SystemdCgroup = false",
        f"  Root = {_toml_str(layout.runc_root)}",
        f"[{cri}.cni]",
        f"  bin_dir = {_toml_str(CNI_BIN_DIR)}",
        f"  conf_dir = {_toml_str(layout.cni_conf_dir)}",
        "  max_conf_num = 1",
        "",
    ])


def cni_conflist(layout: Layout, settings: Settings) -> str:
    """One bridge for the pods, addressed from host-local, the host as gateway.

    The host reaches pods directly at their IPs through the bridge. No IP
    masquerade: pods have nothing to reach outside this machine, and it keeps
    CNI's chains out of the NAT table. host-local keeps its leases under the
    workdir instead of /var/lib/cni."""
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "isDefaultGateway": True,
             "ipMasq": False, "hairpinMode": True, "forceAddress": False,
             "ipam": {"type": "host-local", "dataDir": str(layout.cni_ipam_dir),
                      "ranges": [[{"subnet": settings.pod_cidr,
                                   "gateway": settings.gateway_ip}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=1)


def kubelet_config(layout: Layout, settings: Settings, ports: Ports,
                   creds: Credentials) -> str:
    """The kubelet's static config file (KubeletConfiguration v1beta1)."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # 1.34 still runs on cgroup v1 when told so; these machines have no v2.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        # The kubelet's API on the node IP only (the dummy interface), never 0.0.0.0.
        "address": settings.node_ip,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(creds.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(creds.kubelet_serving.key),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(creds.ca.cert)}},
        "authorization": {"mode": "Webhook"},
        "podCIDR": settings.pod_cidr,
        "clusterDomain": "cluster.local",
        # our cluster-dns on the node IP: pods find Services by name
        "clusterDNS": [settings.node_ip],
        "podLogsDir": str(layout.pod_logs),
        "resolvConf": "/etc/resolv.conf",
        # Images cannot be pulled again here: never garbage-collect them, and
        # keep evicting pods for disk to a machine that is really full.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
        # Quicker status and pod events than the defaults: start() waits on them.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "serializeImagePulls": False,
        "staticPodPath": "",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "protectKernelDefaults": False,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
        # -999 by default; not allowed here (no CAP_SYS_RESOURCE), so say 0.
        "oomScoreAdj": 0,
    }
    config.update(settings.extra_kubelet_config)
    return json.dumps(config, indent=1)


def proxy_config(layout: Layout, settings: Settings, ports: Ports,
                 creds: Credentials) -> str:
    """kube-proxy's config: services and NodePorts on the node IP only.

    NodePorts answer on the dummy node address only (``nodePortAddresses``),
    never on the machine's real interfaces nor on 127.0.0.1 (that would need
    route_localnet). Conntrack sysctls are left as they are (0 = do not set)."""
    return json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": settings.proxy_mode,
        "clientConnection": {"kubeconfig": str(creds.kubeconfigs["kube-proxy"])},
        "hostnameOverride": settings.node_name,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "clusterCIDR": settings.pod_cidr,
        "oomScoreAdj": 0,  # -999 by default, refused here (no CAP_SYS_RESOURCE)
        "nodePortAddresses": [f"{settings.node_ip}/32"],
        "iptables": {"localhostNodePorts": False, "syncPeriod": "10s", "minSyncPeriod": "0s"},
        "nftables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }, indent=1)
