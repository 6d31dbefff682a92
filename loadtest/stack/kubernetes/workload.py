"""What the harness needs to know of the team's objects: the Deployment it scales, the
Service in front of its pods, the images every workload runs, where the counter lives.

Pure functions over the objects ``sources.read`` returned; each problem is one line
(``ManifestError``) naming the object and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtest.stack.kubernetes.sources import ManifestError

#: Kinds whose pods the harness starts: they carry a pod template (or are a pod).
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod")
#: Kinds with no namespace: applying them would outlive the run's namespace.
CLUSTER_SCOPED = ("Namespace", "Node", "PersistentVolume", "ClusterRole",
                  "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                  "PriorityClass", "IngressClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration", "APIService", "RuntimeClass")


def name_of(obj: dict) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def label(obj: dict) -> str:
    """``Deployment/shop``: how an object is named in a message."""
    return f"{obj.get('kind')}/{name_of(obj)}"


def pod_spec(obj: dict) -> dict | None:
    """The pod spec a workload runs (None for other kinds)."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj.get("spec") or {}
    if kind in WORKLOADS:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return None


def containers(spec: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in (spec.get(key) or [])
            if isinstance(c, dict)]


def images(objects: list[dict]) -> list[str]:
    """Every image a workload runs, once each, in order."""
    seen: list[str] = []
    for obj in objects:
        spec = pod_spec(obj)
        for container in containers(spec or {}):
            image = container.get("image")
            if image and image not in seen:
                seen.append(str(image))
    return seen


def check_scope(objects: list[dict]) -> None:
    """Objects of the cluster as a whole cannot go into the run's namespace."""
    for obj in objects:
        if obj.get("kind") in CLUSTER_SCOPED and obj.get("kind") != "Namespace":
            raise ManifestError(f"{label(obj)} is cluster-scoped: the harness applies the "
                                "manifests into a namespace of the run's own, and would leave "
                                "it behind; leave it out of --kube-manifests")


def deployment(objects: list[dict], wanted: str | None) -> dict:
    """The Deployment to scale: the one named, else the only one."""
    found = [o for o in objects if o.get("kind") == "Deployment"]
    names = [name_of(o) for o in found]
    if wanted:
        for obj in found:
            if name_of(obj) == wanted:
                return obj
        have = f"its Deployments: {', '.join(names)}" if names else "it has no Deployment"
        raise ManifestError(f"--kube-deployment {wanted}: no Deployment of that name in the "
                            f"manifests ({have})")
    if not found:
        raise ManifestError("the manifests have no Deployment to scale")
    if len(found) > 1:
        raise ManifestError(f"the manifests have several Deployments ({', '.join(names)}): "
                            "choose the one to scale with --kube-deployment")
    return found[0]


def pod_labels(deployment_obj: dict) -> dict[str, str]:
    template = (deployment_obj.get("spec") or {}).get("template") or {}
    return {str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels")
                                        or {}).items()}


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """A Service's selector (plain labels) matches these pod labels."""
    return bool(selector) and all(labels.get(str(k)) == str(v)
                                  for k, v in (selector or {}).items())


def service_for(objects: list[dict], deployment_obj: dict) -> dict:
    """The Service whose selector picks the Deployment's pods (the first, if several)."""
    labels = pod_labels(deployment_obj)
    for obj in objects:
        if obj.get("kind") == "Service" and \
                selects((obj.get("spec") or {}).get("selector"), labels):
            return obj
    raise ManifestError(f"no Service in the manifests selects the pods of "
                        f"{label(deployment_obj)} (labels {labels}): the harness's balancer "
                        "follows that Service's EndpointSlices, as an ingress controller does")


@dataclass(frozen=True)
class Port:
    """Where the balancer sends requests: the Service port's name (for the EndpointSlice)
    and the container port it targets (a number, or a name the slice resolves)."""

    name: str
    target: int | str


def service_port(service: dict, app_port: int | None) -> Port:
    """The Service port that reaches ``app_port`` when given, else its first."""
    ports = (service.get("spec") or {}).get("ports") or []
    if not ports:
        raise ManifestError(f"{label(service)} has no ports")
    chosen = ports[0]
    if app_port:
        chosen = next((p for p in ports if p.get("targetPort") == app_port
                       or p.get("port") == app_port), None)
        if chosen is None:
            raise ManifestError(f"--app-port {app_port}: {label(service)} has no port "
                                "targeting it")
    return Port(str(chosen.get("name") or ""), chosen.get("targetPort") or chosen.get("port"))


def store_service(objects: list[dict], name: str) -> dict:
    """The Service named by --counter-read (redis:SERVICE:KEY)."""
    for obj in objects:
        if obj.get("kind") == "Service" and name_of(obj) == name:
            return obj
    raise ManifestError(f"--counter-read: no Service {name!r} in the manifests")


__all__ = ["CLUSTER_SCOPED", "Port", "WORKLOADS", "check_scope", "containers", "deployment",
           "images", "label", "name_of", "pod_labels", "pod_spec", "selects", "service_for",
           "service_port", "store_service"]
