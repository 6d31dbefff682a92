"""``--stack kubernetes``: the team's manifests, unchanged, on a real cluster, behind the
harness's own balancer fed from the EndpointSlices.

- **Which cluster** (``target``): ``--kubeconfig`` names the user's; without it the run
  starts a throwaway single-node one under its directory and stops it at the end.
- **What runs** (``sources``, ``workload``, ``applied``): ``--kube-manifests`` (a file, a
  folder, or a kustomization; the hello app and its Redis by default), applied as a
  copy into a namespace of the run's own (``namespace``), the copy's differences said
  in one line and in run.json. ``--kube-deployment`` is the Deployment to scale.
- **Routing** (``watch``, ``tracker``, ``feed``): the balancer (Traefik or HAProxy, on
  127.0.0.1, as on the embedded stack) routes to the endpoints the Service's
  EndpointSlices call ready, named by their pods, so the scale-in race happens as in
  production; every pod's life is an event (added when routed, removing with its
  terminating and endpoint-leaving times, removed, died with the kubelet's reason).
- **Scaling** goes through the Deployment's ``scale`` subresource; a scale is ready when
  exactly N pods are Ready, in the EndpointSlice, and routed by the balancer.
- **Faults and the store** (``runtime``, ``store``): containers are killed, frozen and
  thawed through the embedded cluster's containerd; a pod deleted through the API;
  Redis read and restarted by ``exec``.

Importing this module starts nothing and imports no Kubernetes client: the harness
lists every backend's options at start.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import yaml

from loadtest.contract import events as ev
from loadtest.stack.base import (
    BalancerRow,
    Replica,
    Stack,
    StackError,
    StackSettings,
    Unsupported,
    api_port_or_free,
    require_binary,
    wait_until,
)
from loadtest.stack.kubernetes import workload

log = logging.getLogger("scalecheck")
MANIFESTS = Path(__file__).resolve().parent / "manifests"
#: What runs when no --kube-manifests is given: the hello app, its Service, Redis.
DEFAULT_MANIFESTS = MANIFESTS / "hello.yaml"


class KubernetesStack(Stack):
    name = "kubernetes"
    balancers = ("traefik", "haproxy")
    #: How long ``python -m loadtest.stack up -d`` waits: a first build takes ~8 minutes.
    start_timeout = 900.0

    def __init__(self, port: int = 4000, manifests: Path | str | None = None,
                 deployment: str | None = None, kubeconfig: Path | str | None = None,
                 balancer: str = "traefik", api_port: int | None = None,
                 workdir: Path | None = None, log_dir: Path | None = None,
                 run_name: str | None = None, app_port: int | None = None,
                 counter_read: str | None = None, ready_timeout: float = 120.0,
                 cluster_autoscaler: dict | None = None) -> None:
        super().__init__()
        from loadtest.stack.kubernetes.target import EmbeddedCluster, UserCluster

        self._front(port, balancer, api_port)
        self.ours = manifests is None
        self.manifests = Path(manifests) if manifests else DEFAULT_MANIFESTS
        self.deployment_name = deployment or ("hello" if self.ours else None)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else \
            Path(tempfile.mkdtemp(prefix="scalecheck-kube-"))
        self.log_dir = Path(log_dir) if log_dir else self.workdir / "logs"
        self.run_name = run_name or self.workdir.parent.name or "run"
        self.app_port = app_port
        if counter_read is None and self.ours:
            counter_read = "redis:redis:counter"
        self.counter_read = counter_read
        self.ready_timeout = ready_timeout
        self.target = UserCluster(Path(kubeconfig)) if kubeconfig else \
            EmbeddedCluster(self.workdir)
        self.objects: list[dict] = []
        self.applied = None          # applied.Applied, once up
        self.namespace = None        # namespace.Namespace, once created
        self.tracker = None
        self.feed = None
        self.store = None
        self._lb = None
        self._informers: list = []
        self._noticed: list[dict] = []
        self._noticed_lock = threading.Lock()
        self._paused: dict[str, str] = {}  # pod -> container id frozen by a fault
        self._checked = False
        self._up = False
        self._logs_saved = False
        self._balancer_reported = False
        self._facts: dict = {}
        self._task_pids: dict[str, int] = {}  # container id -> pid, as ctr last said
        #: --autoscale cluster: None (the harness scales), else the flags of an HPA to
        #: write when the manifests have none ({} : the manifests must have one).
        self.cluster_autoscaler = cluster_autoscaler
        self.hpa: dict | None = None  # the HPA the cluster runs, once preflight chose it

    # -- options ----------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--kube-manifests", default="", metavar="PATH",
            help="--stack kubernetes: the app's manifests, left unchanged: a YAML file, a "
                 "folder of them, or a kustomization (its Deployment, Service and, "
                 "optionally, HorizontalPodAutoscaler); applied as a copy into a namespace "
                 "of the run's own (default: the hello app and Redis)")
        add("--kube-deployment", default="", metavar="NAME",
            help="--stack kubernetes: the Deployment to scale (default: the manifests' only "
                 "one; hello for the hello app)")
        add("--kubeconfig", default="", metavar="PATH",
            help="--stack kubernetes: a cluster of yours (kind, minikube, k3d, a real one); "
                 "the run uses only a namespace of its own there (default: a throwaway "
                 "single-node cluster under the run directory, removed at the end)")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> KubernetesStack:
        opts = settings.options
        run_dir = settings.run_dir
        return cls(port=settings.port, manifests=opts.get("kube_manifests") or None,
                   deployment=opts.get("kube_deployment") or None,
                   kubeconfig=opts.get("kubeconfig") or None, balancer=settings.balancer,
                   api_port=settings.api_port, workdir=settings.workdir,
                   log_dir=settings.log_dir, run_name=run_dir.name if run_dir else "stack",
                   app_port=settings.app_port, counter_read=settings.counter_read,
                   cluster_autoscaler=opts.get("cluster_autoscaler"),
                   **({"ready_timeout": settings.ready_timeout} if settings.ready_timeout
                      else {}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- before anything is created ----------------------------------------------------

    def preflight(self) -> None:
        """Bad manifests, a missing Deployment, an image that is nowhere, a cluster that
        does not answer: one line each, before anything exists."""
        if self._checked:
            return
        from loadtest.stack.kubernetes import sources
        from loadtest.stack.kubernetes.target import EmbeddedCluster

        if self.balancer == "haproxy":
            require_binary("haproxy")
        else:
            from loadtest.stack.balancers.traefik import traefik_binary

            traefik_binary()
        try:
            self.objects = sources.read(self.manifests)
            workload.check_scope(self.objects)
            wanted = self.deployment_name
            if self.cluster_autoscaler is not None:
                from loadtest.stack.kubernetes.hpa import scaled_by_the_hpa

                wanted = scaled_by_the_hpa(self.objects, wanted)
            dep = workload.deployment(self.objects, wanted)
            service = workload.service_for(self.objects, dep)
            port = workload.service_port(service, self.app_port)
            store = None
            if self.counter_read:
                store = workload.store_service(self.objects, self._counter()[0])
            if self.cluster_autoscaler is not None:
                self.hpa = self._cluster_hpa(dep)
        except sources.ManifestError as exc:
            raise StackError(str(exc)) from None
        self.deployment_name = workload.name_of(dep)
        self._facts = {"deployment": dep, "service": service, "port": port, "store": store}
        self.target.preflight()
        if isinstance(self.target, EmbeddedCluster) or self.target.loads_images:
            self._check_images()
        self._claim_ports(self.port, self._api_port)
        self._checked = True

    def _cluster_hpa(self, deployment: dict) -> dict:
        """The HPA that will drive the Deployment: the team's, or one from the flags."""
        from loadtest.stack.kubernetes import hpa

        flags = self.cluster_autoscaler or {}
        name = workload.name_of(deployment)
        chosen = hpa.team_hpa(self.objects, name)
        if chosen is None:
            if not flags.get("target"):
                raise StackError(f"--autoscale cluster: the manifests have no "
                                 f"HorizontalPodAutoscaler for Deployment {name}; add one, "
                                 "or give --autoscale-metric cpu --autoscale-target PERCENT "
                                 "--min-replicas N --max-replicas M")
            chosen = hpa.written_hpa(name, flags["target"], flags["min_replicas"],
                                     flags["max_replicas"])
        hpa.check_cpu_requests(chosen, deployment)
        return chosen

    def _counter(self) -> tuple[str, str]:
        parts = str(self.counter_read).split(":")
        if len(parts) != 3 or parts[0] != "redis" or not parts[1] or not parts[2]:
            raise StackError(f"--counter-read {self.counter_read}: expected redis:SERVICE:KEY")
        return parts[1], parts[2]

    def _check_images(self) -> None:
        """Every image must be in Docker (it is loaded), already in the cluster, or stood
        in for: the embedded cluster has no registry."""
        from loadtest.stack.kubernetes import applied, runtime

        docker = runtime.docker_answers()
        for image in workload.images(self.objects):
            if self._present(image, docker):
                continue
            stand_in = applied.STAND_INS.get(applied.repository(image))
            if stand_in and self._present(stand_in, docker):
                continue
            where = "" if docker else " (and Docker does not answer)"
            raise StackError(f"image {image} is not present locally{where}: the embedded "
                             "cluster has no registry; build or load it into Docker first")

    def _present(self, image: str, docker: bool = True) -> bool:
        from loadtest.stack.kubernetes.runtime import docker_image_id

        if docker and docker_image_id(image) is not None:
            return True
        rt = self.target.runtime
        return rt is not None and rt.has_image(image)

    # -- up ----------------------------------------------------------------------------

    def up(self, replicas: int):
        self.preflight()
        with self.lock:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._up = True
            self.target.start()
            self._deploy(replicas)
            self._start_routing()
            self._wait_others()
            return self.scale(replicas, by="up")

    def _deploy(self, replicas: int) -> None:
        from loadtest.stack.kubernetes import applied, namespace

        kube = self.target.kube
        self.namespace = namespace.Namespace(kube, namespace.name_for(self.run_name))
        self.namespace.create(self.run_name)
        loads = self.target.loads_images
        self.applied = applied.prepare(self.objects, self.namespace.name, self.deployment_name,
                                       replicas, loads, self._present, hpa=self.hpa)
        if loads:
            self._load_images()
        (self.workdir / "applied.yaml").write_text(
            yaml.safe_dump_all(self.applied.objects, sort_keys=False))
        summary = self.applied.summary()
        say = log.warning if self.applied.changes or self.applied.held_back else log.info
        say("scalecheck: applying %s into namespace %s (%s cluster); the copy differs "
            "in: %s", self.manifests, self.namespace.name, self.target.kind, summary)
        self.namespace.apply(self.applied.objects)

    def _load_images(self) -> None:
        from loadtest.stack.kubernetes import runtime

        rt = self.target.runtime
        for image in workload.images(self.applied.objects):
            if runtime.docker_image_id(image) is None:
                continue  # already in the cluster (checked at preflight)
            started = time.monotonic()
            if rt.load_docker_image(image):
                log.info("scalecheck: loaded %s into the cluster in %.1f s", image,
                         time.monotonic() - started)

    def _start_routing(self) -> None:
        from loadtest.stack.balancers import make_balancer
        from loadtest.stack.balancers.base import BalancerPaths
        from loadtest.stack.kubernetes.feed import BalancerFeed
        from loadtest.stack.kubernetes.store import ClusterStore
        from loadtest.stack.kubernetes.tracker import Tracker
        from loadtest.stack.kubernetes.watch import Informer

        facts, kube, ns = self._facts, self.target.kube, self.namespace.name
        selector = ((facts["deployment"].get("spec") or {}).get("selector") or {}) \
            .get("matchLabels") or {}
        store = facts["store"]
        self.tracker = Tracker(selector, (store.get("spec") or {}).get("selector")
                               if store else None, facts["port"], self._note,
                               self.events.expected)
        service = facts["service"]["metadata"]["name"]
        self._informers = [
            Informer(kube, f"/api/v1/namespaces/{ns}/pods", self.tracker.on_pod,
                     "pods").start(),
            Informer(kube, f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                     self.tracker.on_slice, "endpointslices",
                     selector=f"kubernetes.io/service-name={service}").start()]
        # An ingress controller does not health-check: readiness is the pods' own probe.
        paths = BalancerPaths(self.port, api_port_or_free(self._api_port), self.workdir,
                              self.log_dir, health_path=None)
        self._lb = make_balancer(self.balancer, paths)
        self._lb.start()
        self.feed = BalancerFeed(self._lb, self.tracker, self._note).start()
        if store is not None:
            self.store = ClusterStore(kube, ns, self.tracker, store["metadata"]["name"],
                                      self._counter()[1], self.target.runtime)

    def _wait_others(self) -> None:
        """The app's other Deployments (its Redis) available before the first request."""
        kube, ns = self.target.kube, self.namespace.name
        others = [o["metadata"]["name"] for o in self.applied.objects
                  if o.get("kind") == "Deployment" and o["metadata"]["name"]
                  != self.deployment_name]

        def available() -> bool:
            for name in others:
                status = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}") \
                    .get("status") or {}
                if (status.get("availableReplicas") or 0) < 1:
                    return False
            return True

        if others:
            wait_until(available, self.ready_timeout, interval=0.2,
                       what=f"Deployment(s) {', '.join(others)} to be available")
        if self.target.runtime is not None:
            self._wait_services_answer()

    def _wait_services_answer(self) -> None:
        """On the embedded cluster, each other Service answers a TCP connection at its
        cluster IP (through kube-proxy, as a pod reaches it) before the first request: a
        Redis without a readiness probe is 'available' before it listens, and the shop's
        first requests then failed for want of its cache."""
        kube, ns = self.target.kube, self.namespace.name
        app_service = workload.name_of(self._facts["service"])
        addresses = []
        for obj in self.applied.objects:
            if obj.get("kind") != "Service" or workload.name_of(obj) == app_service:
                continue
            live = kube.get(f"/api/v1/namespaces/{ns}/services/{workload.name_of(obj)}")
            ip = (live.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                addresses += [(ip, int(p["port"])) for p in live["spec"].get("ports") or []]

        def answers(address: tuple[str, int]) -> bool:
            try:
                with socket.create_connection(address, timeout=0.5):
                    return True
            except OSError:
                return False

        for address in addresses:
            wait_until(lambda a=address: answers(a), self.ready_timeout, interval=0.2,
                       what=f"the Service at {address[0]}:{address[1]} to answer")

    def _note(self, name: str, t: float | None = None, /, **payload) -> dict:
        event = self.events.add(name, t, **payload)
        with self._noticed_lock:
            self._noticed.append(event)
        return event

    # -- scaling -------------------------------------------------------------------------

    def _require_up(self) -> None:
        if not self._up or self.feed is None:
            raise StackError("the stack is not up")
        if not self._lb.alive():
            raise StackError(f"{self.balancer} is not running (exit code "
                             f"{self._lb.returncode()})")

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        before = {p.name for p in self.tracker.app_pods()}
        self.target.kube.patch(f"/apis/apps/v1/namespaces/{self.namespace.name}/deployments/"
                               f"{self.deployment_name}/scale", {"spec": {"replicas": replicas}})

        def counted() -> bool:
            if (stuck := self.tracker.stuck()) is not None:
                raise StackError(stuck)
            return len(self.tracker.app_pods()) == replicas

        wait_until(counted, self.ready_timeout, interval=0.05,
                   what=f"the Deployment to have {replicas} pods")
        after = {p.name for p in self.tracker.app_pods()}
        return sorted(after - before), sorted(before - after)

    def _wait_routed(self, replicas: int) -> None:
        wait_until(lambda: self._routed_exactly(replicas), self.ready_timeout, interval=0.05,
                   what=f"exactly {replicas} pods Ready, in the EndpointSlice and routed by "
                        f"{self.balancer}")

    def _routed_exactly(self, replicas: int) -> bool:
        if (stuck := self.tracker.stuck()) is not None:
            raise StackError(stuck)
        live = {p.name for p in self.tracker.app_pods()}
        ready = self.tracker.ready_pods()
        routable = set(self.tracker.routable())
        return len(live) == replicas and ready == live == routable and \
            self.feed.routes_exactly(routable)

    def replicas(self) -> list[Replica]:
        if self.feed is None:
            return []
        leaving = {p.name for p in self.tracker.app_pods(live=False)
                   if p.deleting is not None or p.gone}
        with self.feed.lock:
            routed = dict(self.feed.routed)
            since = dict(self.feed.since)
        return [Replica(name, address, "paused" if name in self._paused else "up", None,
                        since.get(name)) for name, address in sorted(routed.items())
                if name not in leaving]

    def replica_since(self) -> dict[str, float | None]:
        return {r.hostname: r.started for r in self.replicas()}

    def read_counter(self) -> int | None:
        if self.store is None or not self._up:
            return None
        return self.store.read()

    # -- the end -------------------------------------------------------------------------

    def down(self) -> None:
        with self.lock:
            if not self._up:
                self._release()
                return
            self._up = False
            self._thaw()
            if self.feed is not None:
                self.feed.stop()
            for informer in self._informers:
                informer.stop()
            if self.namespace is not None:
                self._save_pod_logs()
                if self.target.kind != "embedded":  # the whole cluster goes otherwise
                    left = self.namespace.delete()
                    if left:
                        log.warning("scalecheck: %s", left)
            if self._lb is not None:
                self._lb.close()
            left = self.target.stop()
            if left:
                log.warning("scalecheck: the embedded cluster left %d thing(s) behind: %s",
                            len(left), "; ".join(left[:5]))
            self._release()

    def _release(self) -> None:
        self._release_port()
        if self.target.kube is not None and self.target.kind != "embedded":
            self.target.kube.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _thaw(self) -> None:
        """What a fault left frozen would never stop otherwise."""
        rt = self.target.runtime
        for cid in list(self._paused.values()):
            try:
                rt.resume(cid)
            except StackError:
                pass
        self._paused.clear()
        if self.store is not None:
            try:
                self.store.resume()
            except StackError:
                pass

    def _save_pod_logs(self) -> None:
        if self._logs_saved:
            return
        try:
            self.namespace.save_logs(self.log_dir)
            self._logs_saved = True
        except (OSError, StackError) as exc:
            log.warning("scalecheck: saving the pods' logs: %s", exc)

    def save_logs(self, dest: Path) -> None:
        if self._up and self.namespace is not None:
            self.namespace.save_logs(Path(dest))
        else:
            super().save_logs(dest)

    # -- watching ------------------------------------------------------------------------

    def poll(self) -> list[dict]:
        if not self._up:
            return []
        if self._lb is not None and not self._lb.alive() and not self._balancer_reported \
                and not self.events.expected("balancer"):
            self._balancer_reported = True
            self._note(ev.BALANCER_DIED, balancer=self.balancer,
                       returncode=self._lb.returncode())
        with self._noticed_lock:
            noticed, self._noticed = self._noticed, []
        return noticed

    def balancer_view(self) -> list[BalancerRow]:
        if self._lb is None or self.feed is None:
            return []
        with self.feed.lock:
            return self._lb.view() if self._lb.alive() else []

    def balancer_version(self) -> str | None:
        return self._lb.version() if self._lb is not None else None

    def balancer_access_log(self) -> Path | None:
        return self.log_dir / "traefik-access.log" if self.balancer == "traefik" else None

    def parts(self) -> dict[str, list[int]]:
        """The balancer's process and each pod's first process on this machine (the
        embedded cluster's runtime tells them)."""
        from loadtest.stack.kubernetes.runtime import container_id

        rt = self.target.runtime
        if rt is None:
            raise Unsupported("the kubernetes stack knows its pods' processes only on the "
                              "embedded cluster")
        out: dict[str, list[int]] = {}
        if self._lb is not None and self._lb.process is not None:
            out["balancer"] = [self._lb.process.pid]
        if self.tracker is None:
            return out
        wanted = {f"replica:{r.hostname}": container_id(self.tracker.container_of(r.hostname))
                  for r in self.replicas()}
        for pod in self.tracker.store_pods():
            wanted["store"] = container_id(self.tracker.container_of(pod.name))
        # Asked every second by the CPU sampler: ctr runs only when a container changed
        # (a fork of this process, in the middle of the load generator's greenlets).
        if not set(wanted.values()) <= set(self._task_pids):
            self._task_pids = rt.task_pids()
        out.update({part: [self._task_pids[cid]] for part, cid in wanted.items()
                    if cid in self._task_pids})
        return out

    def replica_cpu_seconds(self) -> dict[str, float]:
        import psutil

        out = {}
        for part, pids in self.parts().items():
            if not part.startswith("replica:"):
                continue
            try:
                root = psutil.Process(pids[0])
                tree = [root, *root.children(recursive=True)]
                out[part.split(":", 1)[1]] = sum(p.cpu_times().user + p.cpu_times().system
                                                 for p in tree)
            except psutil.Error:
                continue
        return out

    def describe(self) -> dict:
        applied = self.applied
        return {**super().describe(),
                "balancer_api": f"http://127.0.0.1:{self._lb.paths.api_port}"
                if self._lb is not None else None,
                "balancer_health_check": None,
                "kubernetes": {
                    **self.target.describe(),
                    "manifests": str(self.manifests), "ours": self.ours,
                    "namespace": self.namespace.name if self.namespace else None,
                    "deployment": self.deployment_name,
                    "service": self._facts["service"]["metadata"]["name"]
                    if self._facts else None,
                    "applied_copy": str(self.workdir / "applied.yaml"),
                    "changes": applied.changes if applied else [],
                    "held_back": applied.held_back if applied else [],
                    "counter_read": self.counter_read,
                    # --autoscale cluster: the HPA the cluster runs, as applied
                    "autoscaler": self.hpa}}

    # -- faults ----------------------------------------------------------------------------

    def _pick(self, hostname: str | None) -> str:
        replicas = self.replicas()
        names = {r.hostname for r in replicas}
        if hostname:
            if hostname not in names:
                raise StackError(f"no pod named {hostname} is in service")
            return hostname
        if not replicas:
            raise StackError("no pod is in service")
        return max(replicas, key=lambda r: (r.started or 0, r.hostname)).hostname

    def _runtime_container(self, pod: str, what: str) -> str:
        from loadtest.stack.kubernetes.runtime import container_id

        if self.target.runtime is None:
            raise StackError(f"{what} needs the cluster's container runtime (the embedded "
                             "cluster's); this cluster's is out of reach")
        cid = self.tracker.container_of(pod)
        if cid is None:
            raise StackError(f"pod {pod} has no running container")
        return container_id(cid)

    def autoscaler_status(self) -> dict | None:
        """The cluster's HPA as its controller reports it; None before the controller has
        said anything."""
        from loadtest.stack.kubernetes import hpa

        if self.hpa is None or self.namespace is None:
            return None
        live = self.target.kube.get(f"/apis/autoscaling/v2/namespaces/{self.namespace.name}/"
                                    f"horizontalpodautoscalers/{workload.name_of(self.hpa)}")
        status = hpa.reported(live)
        return None if status["desired"] is None else status

    def autoscaler_pods(self) -> list[dict]:
        """Each pod's used CPU (metrics.k8s.io) beside its request, in millicores."""
        from loadtest.stack.kubernetes import hpa
        from loadtest.stack.kubernetes.rest import KubeError

        if self.namespace is None:
            return []
        labels = ((self._facts["deployment"].get("spec") or {}).get("selector") or {}) \
            .get("matchLabels") or {}
        try:
            metrics = self.target.kube.get(
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.namespace.name}/pods",
                labelSelector=",".join(f"{k}={v}" for k, v in labels.items()))
        except KubeError:
            metrics = {}  # metrics-server not answering yet: the HPA says so in its conditions
        return hpa.pods_cpu(metrics, hpa.cpu_request_milli(self._facts["deployment"]))

    def kill_replica(self, hostname: str | None = None, sig: int = signal.SIGKILL) -> str:
        pod = self._pick(hostname)
        cid = self._runtime_container(pod, "killing a container")
        sent = time.time()
        self.target.runtime.kill(cid, sig)
        self._note(ev.REPLICA_SIGNALLED, sent, hostname=pod, signal=int(sig), container=cid)
        return pod

    def delete_replica(self, hostname: str | None = None) -> str:
        """Delete a pod through the API, gracefully (its grace period, its preStop), as
        an eviction or ``kubectl delete pod`` does; its ReplicaSet replaces it."""
        pod = self._pick(hostname)
        self.target.kube.delete(f"/api/v1/namespaces/{self.namespace.name}/pods/{pod}")
        return pod

    def pause_replica(self, hostname: str | None = None) -> str:
        pod = self._pick(hostname)
        cid = self._runtime_container(pod, "freezing a container")
        self.target.runtime.pause(cid)
        self._paused[pod] = cid
        self._note(ev.REPLICA_SIGNALLED, hostname=pod, signal=int(signal.SIGSTOP),
                   container=cid)
        return pod

    def resume_replica(self, hostname: str) -> None:
        cid = self._paused.pop(hostname, None)
        if cid is None:
            raise StackError(f"pod {hostname} is not frozen")
        self.target.runtime.resume(cid)
        self._note(ev.REPLICA_SIGNALLED, hostname=hostname, signal=int(signal.SIGCONT),
                   container=cid)

    def _store(self):
        if self.store is None:
            raise StackError("the harness does not know where the app keeps its state "
                             "(--counter-read redis:SERVICE:KEY)")
        return self.store

    def pause_store(self) -> None:
        self._store().pause()

    def resume_store(self) -> None:
        self._store().resume()

    def restart_store(self, persist: bool) -> dict:
        from loadtest.stack.docker.engine import store_restart_result

        store = self._store()
        with self.events.expecting("store"):
            paused_at, before = store.restart(persist, self.read_counter)
        return store_restart_result(paused_at, before, persist, self.read_counter())

    def restart_balancer(self) -> None:
        with self.events.expecting("balancer"):
            self.feed.restart_balancer()
        self._wait_routed(len(self.replicas()))


__all__ = ["DEFAULT_MANIFESTS", "KubernetesStack"]
