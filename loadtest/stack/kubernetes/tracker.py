"""The run's pods and the Service's endpoints as the harness follows them, and the events
their changes make.

Fed by the watches (``watch``) with each pod and EndpointSlice document and the time it
was seen; pure bookkeeping otherwise, so the rules can be read (and tested) here:

- the balancer is fed the endpoints the EndpointSlices call **ready**, as an ingress
  controller is: a pod leaves rotation when the endpoint controller says so, not when
  the harness decides (``routable``);
- a pod of the Deployment that starts terminating (a scale-down, a delete) is
  ``replica_removing``, with both times Kubernetes gives: when it began terminating
  (``terminating_at``: its deletionTimestamp less its grace period, a whole second;
  ``noticed_terminating``: when this process saw it) and when it left the
  EndpointSlice (``left_endpoints_at``); the event's own time is when the balancer
  stopped routing to it (``unrouted_at``), as for every backend: between the first
  two and that one, the balancer still sends it requests (the race a ``preStop``
  pause is for);
- its deletion is ``replica_removed``;
- a container seen running that terminates while its pod is not terminating is
  ``replica_died``, with the kubelet's reason (``Error``, ``OOMKilled``...), exit code
  and signal; the kubelet restarts it in the same pod, which comes back under the
  same name (``replica_added`` again once routed);
- the store's container (the pods of ``--counter-read``'s Service) terminating on its
  own is ``store_died``, unless the harness restarts it (``EventLog.expecting``).

Only pods that were routed at some time get removal events: a pod scaled away before it
was ever ready served nothing.
"""

from __future__ import annotations

import calendar
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loadtest.contract import events as ev
from loadtest.stack.kubernetes.workload import Port, selects

Note = Callable[..., dict]  # note(event name, t, **payload) -> the event
#: Waiting reasons after which a pod will not start without someone fixing something.
STUCK = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
         "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
         "RunContainerError")


def k8s_time(text: str | None) -> float | None:
    """``2025-01-01T12:00:00Z`` -> epoch seconds (Kubernetes gives whole seconds)."""
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


@dataclass
class Pod:
    name: str
    role: str                          # "app" (the Deployment's), "store", or "other"
    ip: str | None = None
    ready: bool = False
    deleting: float | None = None      # when this process saw it terminating
    terminating_at: float | None = None
    left_endpoints: float | None = None
    unrouted: float | None = None
    ever_routed: bool = False
    gone: bool = False
    containers: dict[str, str] = field(default_factory=dict)  # name -> current container id
    running_ids: set[str] = field(default_factory=set)
    reported_ids: set[str] = field(default_factory=set)
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> reason, text
    restarts: int = 0
    removing: dict | None = None       # the replica_removing event, filled in as we learn


@dataclass(frozen=True)
class Endpoint:
    pod: str
    address: str          # ip:port
    ready: bool
    serving: bool
    terminating: bool


class Tracker:
    """Pods and endpoints of one run; every method is safe from any thread."""

    def __init__(self, app_labels: dict[str, str], store_selector: dict | None, port: Port,
                 note: Note, expected: Callable[[str, float], bool]) -> None:
        self.app_labels = app_labels
        self.store_selector = store_selector
        self.port = port
        self.note = note
        self.expected = expected
        self.pods: dict[str, Pod] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self._slices: dict[str, dict] = {}
        self._lock = threading.RLock()
        self.changed = threading.Event()  # set whenever the routable set may have changed

    # -- pods ------------------------------------------------------------------------

    def on_pod(self, kind: str, doc: dict, t: float) -> None:
        with self._lock:
            meta = doc.get("metadata") or {}
            name = meta.get("name")
            if not name:
                return
            pod = self.pods.get(name)
            if pod is None:
                pod = self.pods[name] = Pod(name, self._role(meta.get("labels") or {}))
            if kind == "DELETED":
                self._gone(pod, t)
                return
            status = doc.get("status") or {}
            pod.ip = status.get("podIP") or pod.ip
            pod.ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in status.get("conditions") or [])
            if meta.get("deletionTimestamp") and pod.deleting is None:
                self._terminating(pod, meta, t)
            self._containers(pod, status, t)

    def _role(self, labels: dict) -> str:
        if selects(self.app_labels, labels):
            return "app"
        if self.store_selector and selects(self.store_selector, labels):
            return "store"
        return "other"

    def _terminating(self, pod: Pod, meta: dict, t: float) -> None:
        pod.deleting = t
        deadline = k8s_time(meta.get("deletionTimestamp"))
        grace = meta.get("deletionGracePeriodSeconds")
        pod.terminating_at = deadline - grace if deadline is not None and grace is not None \
            else None
        if pod.role == "app" and pod.ever_routed:
            self._removing(pod, t)
        self.changed.set()

    def _removing(self, pod: Pod, t: float) -> None:
        if pod.removing is not None:
            return
        # Until the balancer lets it go, the time it was first seen leaving stands in.
        first = pod.unrouted or min(x for x in (t, pod.left_endpoints) if x is not None)
        pod.removing = self.note(ev.REPLICA_REMOVING, first, hostname=pod.name,
                                 terminating_at=pod.terminating_at, noticed_terminating=t,
                                 left_endpoints_at=pod.left_endpoints,
                                 unrouted_at=pod.unrouted)

    def _gone(self, pod: Pod, t: float) -> None:
        if pod.gone:
            return
        pod.gone = True
        if pod.role == "app" and pod.ever_routed:
            if pod.deleting is None:
                pod.deleting = t
            self._removing(pod, t)
            self.note(ev.REPLICA_REMOVED, t, hostname=pod.name)
        self.changed.set()

    def _containers(self, pod: Pod, status: dict, t: float) -> None:
        pod.waiting = {}
        for cs in status.get("containerStatuses") or []:
            name = cs.get("name", "")
            cid = cs.get("containerID") or ""
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            pod.restarts = max(pod.restarts, int(cs.get("restartCount") or 0))
            if "running" in state and cid:
                pod.running_ids.add(cid)
                pod.containers[name] = cid
            if "waiting" in state:
                waiting = state["waiting"] or {}
                pod.waiting[name] = (str(waiting.get("reason") or ""),
                                     str(waiting.get("message") or ""))
            for term in (state.get("terminated"), last.get("terminated")):
                if term:
                    self._terminated(pod, name, term, int(cs.get("restartCount") or 0), t)

    def _terminated(self, pod: Pod, container: str, term: dict, restarts: int,
                    t: float) -> None:
        cid = term.get("containerID") or ""
        if not cid or cid not in pod.running_ids or cid in pod.reported_ids:
            return
        pod.reported_ids.add(cid)
        if pod.deleting is not None:
            return  # stopped because its pod is going: not a death
        reason = str(term.get("reason") or "")
        code = term.get("exitCode")
        sig = term.get("signal") or (code - 128 if isinstance(code, int) and code > 128
                                     else None)  # 137: SIGKILL (the runtime rarely says)
        details = {"returncode": code, "reason": reason or None, "signal": sig,
                   "container": container,
                   "restarts": restarts, "finished_at": term.get("finishedAt"),
                   "noticed": t}
        if pod.role == "app":
            self.note(ev.REPLICA_DIED, t, hostname=pod.name, **details)
        elif pod.role == "store" and not self.expected("store", t):
            self.note(ev.STORE_DIED, t, store=pod.name, **details)

    # -- endpoints ---------------------------------------------------------------------

    def on_slice(self, kind: str, doc: dict, t: float) -> None:
        with self._lock:
            name = (doc.get("metadata") or {}).get("name", "")
            if kind == "DELETED":
                self._slices.pop(name, None)
            else:
                self._slices[name] = doc
            self._recompute(t)

    def _recompute(self, t: float) -> None:
        endpoints: dict[str, Endpoint] = {}
        for doc in self._slices.values():
            port = self._slice_port(doc)
            for item in doc.get("endpoints") or []:
                ref = item.get("targetRef") or {}
                addresses = item.get("addresses") or []
                if ref.get("kind") != "Pod" or not addresses or port is None:
                    continue
                cond = item.get("conditions") or {}
                ready = cond.get("ready") is not False  # unset means ready (the API's rule)
                endpoints[ref["name"]] = Endpoint(
                    ref["name"], f"{addresses[0]}:{port}", ready,
                    cond.get("serving", ready) is not False, bool(cond.get("terminating")))
        for name, before in self.endpoints.items():
            after = endpoints.get(name)
            if before.ready and (after is None or not after.ready):
                pod = self.pods.setdefault(name, Pod(name, "app"))
                pod.left_endpoints = t
                if pod.removing is not None and pod.removing.get("left_endpoints_at") is None:
                    pod.removing["left_endpoints_at"] = t
        self.endpoints = endpoints
        self.changed.set()

    def _slice_port(self, doc: dict) -> int | None:
        ports = doc.get("ports") or []
        for p in ports:
            if (p.get("name") or "") == self.port.name and p.get("port"):
                return int(p["port"])
        if isinstance(self.port.target, int):
            return self.port.target
        return int(ports[0]["port"]) if len(ports) == 1 and ports[0].get("port") else None

    # -- what the balancer and the scale wait read --------------------------------------

    def routable(self) -> dict[str, str]:
        """Pod -> address of the endpoints the slices call ready."""
        with self._lock:
            return {n: e.address for n, e in self.endpoints.items() if e.ready}

    def routed(self, name: str, t: float) -> None:
        """The balancer routes to this pod from ``t``."""
        with self._lock:
            pod = self.pods.setdefault(name, Pod(name, "app"))
            pod.ever_routed = True
            pod.unrouted = None

    def unrouted(self, name: str, t: float) -> None:
        """The balancer stopped routing to this pod at ``t``."""
        with self._lock:
            pod = self.pods.get(name)
            if pod is None:
                return
            pod.unrouted = t
            if pod.removing is not None and pod.removing.get("unrouted_at") is None:
                pod.removing["unrouted_at"] = pod.removing["t"] = t

    def app_pods(self, live: bool = True) -> list[Pod]:
        """The Deployment's pods (``live``: neither terminating nor gone)."""
        with self._lock:
            return [p for p in self.pods.values() if p.role == "app" and
                    (not live or (p.deleting is None and not p.gone))]

    def ready_pods(self) -> set[str]:
        return {p.name for p in self.app_pods() if p.ready}

    def stuck(self) -> str | None:
        """A live pod of the Deployment that cannot start, said in one line."""
        for pod in self.app_pods():
            for container, (reason, message) in pod.waiting.items():
                if reason in STUCK and (reason != "CrashLoopBackOff" or pod.restarts >= 2):
                    text = f": {message}" if message else ""
                    return f"pod {pod.name} (container {container}) cannot start: " \
                           f"{reason}{text}"[:400]
        return None

    def container_of(self, pod_name: str, container: str | None = None) -> str | None:
        """The running container id of a pod (its first container, or the one named)."""
        with self._lock:
            pod = self.pods.get(pod_name)
            if pod is None or not pod.containers:
                return None
            if container:
                return pod.containers.get(container)
            return next(iter(pod.containers.values()))

    def store_pods(self) -> list[Pod]:
        with self._lock:
            return [p for p in self.pods.values() if p.role == "store" and not p.gone
                    and p.deleting is None]


__all__ = ["Endpoint", "Pod", "STUCK", "Tracker", "k8s_time"]
