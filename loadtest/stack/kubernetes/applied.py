"""The copy of the team's objects that the harness applies, and the list of what differs.

The team's files are never written. The copy differs from them only where the run
needs it, and each difference is said (one line at the start, and in run.json):

- every object goes into the run's namespace;
- the scaled Deployment starts at the plan's first level (``spec.replicas``), as
  ``kubectl scale`` would set it, so no pod starts only to be scaled away;
- an image the harness loads into the cluster (no registry here) gets
  ``imagePullPolicy: IfNotPresent`` where its policy says, or defaults to, Always
  (a ``:latest`` tag's default): the kubelet would try to pull it and fail;
- an image no registry can give here is replaced by a local stand-in where one was
  built (``redis:7-alpine`` -> ``scalecheck/base:bookworm``, as the Compose path does);
- a HorizontalPodAutoscaler of the scaled Deployment is held back: the plan sets the
  replica count, and two controllers on one ``scale`` subresource fight; under
  ``--autoscale cluster`` it is kept (or, where the manifests have none, the one the
  flags describe is added), and the harness only watches;
- Namespace objects are skipped: the run has its own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from loadtest.stack.docker.engine import STAND_INS as DOCKER_STAND_INS
from loadtest.stack.kubernetes.workload import containers, label, name_of, pod_spec

#: Images (by repository) the team's manifests may name that no registry gives here, and
#: the local stand-in that does the same job (the Compose path's, built by `make
#: docker-images`: it has redis-server).
STAND_INS = {"redis": DOCKER_STAND_INS["REDIS_IMAGE"][1]}


def repository(image: str) -> str:
    """``docker.io/library/redis:7-alpine`` -> ``redis``; ``scalecheck/hello`` stays."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/", "library/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def tag(image: str) -> str:
    """The tag an image reference means (``latest`` when it names none)."""
    if "@" in image:
        return ""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


@dataclass
class Applied:
    """The objects to apply, and what differs from the team's."""

    objects: list[dict]
    changes: list[str] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what the copy changed (or that it changed nothing but the namespace)."""
        parts = list(self.changes)
        if self.held_back:
            parts.append("held back " + ", ".join(self.held_back))
        return "; ".join(parts) if parts else "nothing"


def prepare(objects: list[dict], namespace: str, deployment: str, replicas: int,
            loads_images: bool, present: Callable[[str], bool],
            hpa: dict | None = None) -> Applied:
    """The copy to apply into ``namespace``. ``loads_images``: the harness puts images
    into this cluster itself (the embedded one), so pulls must not happen and absent
    registry images may be stood in for; ``present(image)``: the image is local.
    ``hpa``: the cluster's own autoscaler drives the Deployment (``--autoscale
    cluster``): this HPA is applied, the team's or one the flags wrote."""
    out = Applied([])
    moved = set()
    written = hpa is not None and not any(o is hpa for o in objects)
    for original in [*objects, *([hpa] if written else [])]:
        obj = copy.deepcopy(original)
        kind = obj.get("kind")
        if kind == "Namespace":
            out.changes.append(f"{label(obj)} skipped (the run has its own)")
            continue
        if kind == "HorizontalPodAutoscaler" and original is hpa:
            out.changes.append(f"{label(obj)} " + (
                "added from the --autoscale-* flags (the manifests have none)" if written
                else "kept: the cluster's autoscaler drives the Deployment"))
        elif kind == "HorizontalPodAutoscaler" and _targets(obj, deployment):
            out.held_back.append(f"{label(obj)} (the plan sets the replica count; two "
                                 "controllers on one scale subresource fight)")
            continue
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") and meta["namespace"] != namespace:
            moved.add(meta["namespace"])
        meta["namespace"] = namespace
        if kind == "Deployment" and name_of(obj) == deployment:
            spec = obj.setdefault("spec", {})
            if spec.get("replicas") != replicas:
                out.changes.append(f"{label(obj)} replicas {replicas} (the plan's first "
                                   f"level; the file says {spec.get('replicas', 1)})")
                spec["replicas"] = replicas
        if loads_images:
            for container in containers(pod_spec(obj) or {}):
                _local_image(container, obj, present, out)
        out.objects.append(obj)
    if moved:
        out.changes.insert(0, f"namespace {namespace} instead of {', '.join(sorted(moved))}")
    return out


def _targets(hpa: dict, deployment: str) -> bool:
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return ref.get("kind") == "Deployment" and ref.get("name") == deployment


def _local_image(container: dict, obj: dict, present: Callable[[str], bool],
                 out: Applied) -> None:
    image = str(container.get("image") or "")
    if not image:
        return
    stand_in = STAND_INS.get(repository(image))
    if not present(image) and stand_in and present(stand_in):
        what = f"{label(obj)} container {container.get('name')}: image {stand_in} stands " \
               f"in for {image}"
        container["image"] = image = stand_in
        if not container.get("command"):
            container["command"] = ["redis-server"]
            what += " with command redis-server (the official image's entrypoint)"
        out.changes.append(what + " (no registry here)")
    policy = container.get("imagePullPolicy")
    pulls = policy == "Always" or (policy is None and tag(image) == "latest")
    if pulls:
        container["imagePullPolicy"] = "IfNotPresent"
        was = "Always" if policy else "none, so Always for :latest"
        out.changes.append(f"{label(obj)} container {container.get('name')}: "
                           f"imagePullPolicy IfNotPresent (was {was}; the image is loaded "
                           "into the cluster, there is no registry to pull from)")


__all__ = ["Applied", "STAND_INS", "prepare", "repository", "tag"]
