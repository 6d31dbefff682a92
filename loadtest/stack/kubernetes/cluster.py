"""A real single-node Kubernetes on this machine, started and removed by Python.

``Cluster(workdir).start()`` builds nothing it has already built, starts etcd,
the control plane, a containerd of its own, the kubelet, kube-proxy and
metrics-server as child processes, and returns the admin kubeconfig once the
node is Ready, the default ServiceAccount exists and the metrics API answers.
``stop()`` deletes the pods, stops every process, and removes every mount,
interface, network namespace, cgroup and iptables chain the cluster made; it
returns what it could not remove (an empty list). A with-block does both.

One cluster runs per machine (its chains and cgroups have machine-wide names).
If the owning process is killed, the components die with it and the next
``start()`` sweeps the rest. Call ``stop()`` (or ``stop_all()``) from the
harness's own signal handling: this module installs no handlers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import weakref
from pathlib import Path

from loadtest.stack.kubernetes import (
    binaries,
    components,
    configs,
    dns,
    images,
    leftovers,
    machine,
    metricsapi,
    network,
    pki,
    sweep,
)
from loadtest.stack.kubernetes.api import Api, ApiError
from loadtest.stack.kubernetes.layout import Layout, Ports, Settings
from loadtest.stack.kubernetes.processes import (
    NO_REGISTRY,
    ComponentDied,
    Supervisor,
    make_tracking_cgroup,
    wait_for,
)

_LIVE: weakref.WeakSet[Cluster] = weakref.WeakSet()
CONTROL = ["kube-controller-manager", "kube-scheduler"]
# Stopped together, after the pods are gone; then containerd, then the store.
NODE = ["metrics-server", "cluster-dns", "kube-proxy", "kubelet"]


class ClusterError(RuntimeError):
    """The cluster could not start (one line naming the component and its log)."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Cluster:
    """A throwaway single-node cluster whose files all live under ``workdir``."""

    def __init__(self, workdir: Path, settings: Settings | None = None,
                 bins: binaries.Binaries | None = None) -> None:
        self.layout = Layout(Path(workdir).resolve())
        self.settings = settings or Settings()
        self.bins = bins
        self.ports: Ports | None = None
        self.creds: pki.Credentials | None = None
        self.api: Api | None = None
        self.timings: dict[str, float] = {}
        self._supervisor = Supervisor(self.layout.logs)
        self._lock = machine.MachineLock()
        # Re-entrant: a signal handler may call stop() while stop() runs.
        self._stop_lock = threading.RLock()
        self._stopping = False
        self._before: leftovers.HostState | None = None
        self._baseline: machine.Baseline | None = None
        self._started = False

    # -- the public verbs -------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (certificates inlined; system:masters)."""
        return self.layout.admin_kubeconfig

    @property
    def server(self) -> str:
        assert self.ports is not None, "start() first"
        return f"https://{self.settings.node_ip}:{self.ports.apiserver}"

    @property
    def containerd_socket(self) -> Path:
        return self.layout.containerd_socket

    def start(self, timeout: float = 180.0, wait_for_machine: float = 0.0) -> Path:
        """Start everything; return the admin kubeconfig once the cluster is usable.

        Raises ClusterError (after cleaning up) naming what failed and its log,
        and MachineBusy if another process's cluster still runs here after
        ``wait_for_machine`` seconds."""
        if self._started:
            raise ClusterError("this cluster is already started")
        t0 = time.monotonic()
        self.bins = self.bins or binaries.ensure()
        self.timings["build"] = time.monotonic() - t0
        self._lock.acquire(wait_for_machine)
        _LIVE.add(self)
        self._started = True
        try:
            self._start(time.monotonic() + timeout - self.timings["build"])
        except (ComponentDied, TimeoutError, ApiError, OSError, RuntimeError) as exc:
            logs = self.layout.logs
            self.stop(graceful=False)
            raise ClusterError(f"cluster did not start: {exc} (logs in {logs})") from exc
        except BaseException:  # Ctrl-C, SystemExit: nothing may stay behind either
            self.stop(graceful=False)
            raise
        self.timings["start"] = time.monotonic() - t0
        return self.kubeconfig

    def stop(self, graceful: bool = True, timeout: float = 60.0,
             keep_logs: bool = True) -> list[str]:
        """Remove everything the cluster made; return what is left (normally nothing).

        ``graceful`` deletes the pods through the API first, so that each
        sandbox's network is torn down by its CNI plugins; otherwise (and as a
        net afterwards) processes are killed and the host is swept. Safe to call
        twice, from a signal handler's context, or after a failed start."""
        with self._stop_lock:
            if not self._started or self._stopping:
                return []
            self._stopping = True
            t0 = time.monotonic()
            try:
                if graceful:
                    self._stop_gracefully(timeout)
                self._supervisor.kill_all()
                self.timings["stop_processes"] = time.monotonic() - t0
                self._proxy_cleanup()
                sweep.sweep(self.layout.owned_roots(), self.layout.pod_logs,
                            sweep.shim_sockets(self.layout.containerd_state,
                                               self.layout.containerd_socket))
                if self._baseline is not None:
                    self._baseline.restore()
                machine.remove_tree(self.layout, keep_logs=keep_logs)
                if not sweep.mounts_under([machine.RUN_DIR]):  # the kubelet's root may be there
                    shutil.rmtree(machine.RUN_DIR, ignore_errors=True)
            finally:
                self._started = self._stopping = False
                self._lock.release()
                _LIVE.discard(self)
            self.timings["stop"] = time.monotonic() - t0
            return leftovers.leftovers(self._before, self.layout) if self._before else []

    def kill(self) -> list[str]:
        """stop() without asking the cluster anything: for Ctrl-C and errors."""
        return self.stop(graceful=False)

    def leftovers(self) -> list[str]:
        """What the cluster made that is still on the host (compared with before start)."""
        return leftovers.leftovers(self._before or leftovers.HostState(frozenset()),
                                   self.layout)

    def load_image_archive(self, archive: Path) -> None:
        """Import an OCI or ``docker save`` archive into the cluster's containerd."""
        images.import_archive(archive, self.containerd_socket)

    def load_docker_image(self, image: str) -> None:
        """Copy an image from the local Docker engine (``docker save`` -> import)."""
        images.load_docker_image(image, self.containerd_socket)

    def load_program_image(self, name: str, program: Path, entrypoint: list[str] | None = None,
                           env: list[str] | None = None) -> None:
        """Make a one-file image of a static ``program`` and import it."""
        archive = images.write_oci_archive(
            self.layout.images / (name.replace("/", "_").replace(":", "_") + ".tar"), name,
            {"/" + program.name: program}, entrypoint or ["/" + program.name], env)
        self.load_image_archive(archive)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start, step by step ----------------------------------------------------------

    def _remaining(self, deadline: float) -> float:
        return max(1.0, deadline - time.monotonic())

    def _start(self, deadline: float) -> None:
        layout, settings, bins = self.layout, self.settings, self.bins
        assert bins is not None
        mark = time.monotonic()
        machine.clear_leftovers_of_killed_run(layout)
        self._before = leftovers.snapshot(layout)
        machine.remove_tree(layout, keep_logs=False)
        layout.logs.mkdir(parents=True, exist_ok=True)
        self._baseline = machine.Baseline.now()
        machine.write_record(layout, self._baseline)
        network.create_node_interface(settings)
        network.set_sysctls()
        network.install_guard(settings)
        node, local = settings.node_ip, "127.0.0.1"
        self.ports = ports = Ports(
            etcd_client=_free_port(local), etcd_peer=_free_port(local),
            apiserver=_free_port(node), kubelet=_free_port(node),
            kubelet_healthz=_free_port(local), metrics_server=_free_port(node),
            proxy_healthz=_free_port(local), proxy_metrics=_free_port(local))
        self.creds = creds = pki.make_credentials(
            layout.pki, layout.kubeconfigs, self.server, settings.node_name, node,
            settings.kubernetes_service_ip)
        admin = pki.KeyPair(layout.pki / "admin.crt", layout.pki / "admin.key")
        self.api = Api(node, ports.apiserver, creds.ca.cert, admin.cert, admin.key)
        self._write_configs()
        make_tracking_cgroup()
        self.timings["prepare"] = time.monotonic() - mark

        sup = self._supervisor
        sup.start(components.etcd(bins.etcd, layout, ports))
        sup.start(components.containerd(layout), env=NO_REGISTRY)
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"),
                 self._remaining(deadline), "etcd health", sup)
        sup.start(components.apiserver(bins.kube, settings, ports, creds))
        wait_for(lambda: layout.containerd_socket.exists(), self._remaining(deadline),
                 "containerd socket", sup)
        self.load_program_image(images.PAUSE_IMAGE, bins.pause)
        wait_for(lambda: self.api.ok("/readyz"), self._remaining(deadline),
                 "kube-apiserver /readyz", sup)
        self.timings["apiserver_ready"] = time.monotonic() - mark
        sup.start(components.controller_manager(bins.kube, settings, creds))
        sup.start(components.scheduler(bins.kube, creds))
        sup.start(components.kubelet(bins.kube, layout, settings, creds))
        sup.start(components.proxy(bins.kube, layout))
        sup.start(components.cluster_dns(bins.kube, settings, creds))
        sup.start(components.metrics_server(bins.kube, settings, ports, creds,
                                             layout.workdir / "metrics-server"))
        wait_for(lambda: metricsapi.register(self.api, node, ports.metrics_server,
                                             creds.ca.cert),
                 self._remaining(deadline), "metrics-server's APIService created", sup)
        wait_for(self._node_ready, self._remaining(deadline), "node Ready", sup)
        self.timings["node_ready"] = time.monotonic() - mark
        wait_for(lambda: self.api.ok("/api/v1/namespaces/default/serviceaccounts/default"),
                 self._remaining(deadline), "default ServiceAccount", sup)
        wait_for(lambda: metricsapi.available(self.api), self._remaining(deadline),
                 "metrics.k8s.io available", sup)
        wait_for(lambda: dns.resolve(node, "kubernetes.default.svc.cluster.local"),
                 self._remaining(deadline), "cluster DNS answering", sup)
        self.timings["metrics_ready"] = time.monotonic() - mark

    def _write_configs(self) -> None:
        layout, settings, ports, creds = self.layout, self.settings, self.ports, self.creds
        assert ports is not None and creds is not None
        for directory in (layout.containerd_root, layout.containerd_state, layout.cni_conf_dir,
                          layout.cni_ipam_dir, layout.kubelet_root, layout.pod_logs):
            directory.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(configs.containerd_config(layout))
        (layout.cni_conf_dir / "10-scalecheck.conflist").write_text(
            configs.cni_conflist(layout, settings))
        layout.kubelet_config.write_text(configs.kubelet_config(layout, settings, ports, creds))
        layout.proxy_config.write_text(configs.proxy_config(layout, settings, ports, creds))

    def _node_ready(self) -> bool:
        assert self.api is not None
        node = self.api.get(f"/api/v1/nodes/{self.settings.node_name}")
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in node.get("status", {}).get("conditions", []))

    # -- stop, step by step -----------------------------------------------------------

    def _stop_gracefully(self, timeout: float) -> None:
        """Stop the controllers (nothing recreates pods), delete the pods, stop the rest."""
        sup, api = self._supervisor, self.api
        deadline = time.monotonic() + timeout
        mark = time.monotonic()
        sup.stop(CONTROL, timeout=10)
        self.timings["stop_controllers"] = time.monotonic() - mark
        if api is not None and sup.alive("kube-apiserver") and sup.alive("kubelet"):
            mark = time.monotonic()
            try:
                self._delete_pods(api, deadline)
            except (OSError, ApiError):
                pass
            self.timings["stop_pods"] = time.monotonic() - mark
        # The apiserver's graceful shutdown drains clients' watches for up to
        # 10 s; its state is thrown away, so it gets 2 s before SIGKILL.
        for group, grace in ((NODE, 10), (["containerd"], 10), (["kube-apiserver"], 2),
                             (["etcd"], 10)):
            mark = time.monotonic()
            sup.stop(group, timeout=grace)
            self.timings[f"stop_{group[-1]}"] = time.monotonic() - mark

    def _delete_pods(self, api: Api, deadline: float) -> None:
        for pod in api.get("/api/v1/pods").get("items", []):
            meta = pod["metadata"]
            try:
                api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/"
                            f"{meta['name']}", {"gracePeriodSeconds": 1})
            except ApiError:
                continue
        while time.monotonic() < deadline:
            if not api.get("/api/v1/pods").get("items"):
                return
            time.sleep(0.25)

    def _proxy_cleanup(self) -> None:
        """kube-proxy's own way out: removes its chains (iptables, nftables) for both families."""
        if self.bins is None:
            return
        with open(self.layout.log("kube-proxy-cleanup"), "ab") as log:
            subprocess.run([str(self.bins.kube), "kube-proxy", "--cleanup"], stdout=log,
                           stderr=subprocess.STDOUT, timeout=60, check=False)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1 only
        return response.status == 200


def stop_all(graceful: bool = False) -> None:
    """Stop every cluster this process started (for the harness's signal handling)."""
    for cluster in list(_LIVE):
        cluster.stop(graceful=graceful)
