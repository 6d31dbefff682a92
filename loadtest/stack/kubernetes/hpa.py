"""The cluster's own HorizontalPodAutoscaler under ``--autoscale cluster``: the team's,
kept in the applied copy, or one written from the ``--autoscale-*`` flags when the
manifests have none; and what the controller reports, as plain data.

Pure functions: objects in, dicts out (the backend does the API calls).
"""

from __future__ import annotations

from loadtest.stack.kubernetes.sources import ManifestError
from loadtest.stack.kubernetes.workload import containers, name_of, pod_spec

#: The name of the HPA the harness writes when the team's manifests have none.
WRITTEN_NAME = "scalecheck"


def team_hpa(objects: list[dict], deployment: str) -> dict | None:
    """The HorizontalPodAutoscaler in the manifests that scales ``deployment``."""
    for obj in objects:
        if obj.get("kind") != "HorizontalPodAutoscaler":
            continue
        ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment" and ref.get("name") == deployment:
            return obj
    return None


def scaled_by_the_hpa(objects: list[dict], wanted: str | None) -> str | None:
    """The Deployment to scale under --autoscale cluster: the one named, else the target
    of the manifests' only HPA (None: the usual rule, the only Deployment)."""
    if wanted:
        return wanted
    targets = {((o.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
               for o in objects if o.get("kind") == "HorizontalPodAutoscaler"}
    return targets.pop() if len(targets) == 1 else None


def written_hpa(deployment: str, target_percent: float, low: int, high: int) -> dict:
    """An ``autoscaling/v2`` HPA on CPU utilisation of the request, as ``kubectl
    autoscale deployment NAME --cpu-percent=N --min=LOW --max=HIGH`` would write it
    (no ``behavior``: Kubernetes' defaults)."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": WRITTEN_NAME},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": deployment},
                 "minReplicas": low, "maxReplicas": high,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization",
                                               "averageUtilization": round(target_percent)}}}]},
    }


def uses_cpu_utilization(hpa: dict) -> bool:
    for metric in (hpa.get("spec") or {}).get("metrics") or []:
        resource = (metric or {}).get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu" and \
                (resource.get("target") or {}).get("type") == "Utilization":
            return True
    return False


def check_cpu_requests(hpa: dict, deployment: dict) -> None:
    """A CPU-utilisation HPA divides by each container's CPU request: without one the
    controller only reports 'missing request for cpu' and never scales. Said before the
    run, in one line."""
    if not uses_cpu_utilization(hpa):
        return
    for container in containers(pod_spec(deployment) or {}):
        if not ((container.get("resources") or {}).get("requests") or {}).get("cpu"):
            raise ManifestError(
                f"HorizontalPodAutoscaler {name_of(hpa)} scales on CPU utilisation, and "
                f"Deployment {name_of(deployment)}'s container {container.get('name')} has no "
                "resources.requests.cpu: the controller cannot compute it and would never "
                "scale")


def _quantity_milli(value) -> float | None:
    """'250m' -> 250, '1' -> 1000, '1500u' -> 1.5, '12345n' -> 0.012345."""
    if value is None:
        return None
    text = str(value)
    scale = {"n": 1e-6, "u": 1e-3, "m": 1.0}
    try:
        if text and text[-1] in scale:
            return float(text[:-1]) * scale[text[-1]]
        return float(text) * 1000.0
    except ValueError:
        return None


def reported(hpa: dict) -> dict:
    """What the controller says in the HPA's status: the counts, each metric's current
    value, the conditions, and the spec it acts on (min, max, behavior)."""
    spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
    metrics = []
    for metric in status.get("currentMetrics") or []:
        kind = metric.get("type", "")
        body = metric.get(kind[:1].lower() + kind[1:]) or {}
        current = body.get("current") or {}
        entry = {"type": kind, "name": (body.get("metric") or {}).get("name") or body.get("name")}
        if "averageUtilization" in current:
            entry["utilization"] = current["averageUtilization"]
        if "averageValue" in current:
            entry["average_value"] = current["averageValue"]
        if "value" in current:
            entry["value"] = current["value"]
        metrics.append(entry)
    return {
        "hpa": name_of(hpa),
        "desired": status.get("desiredReplicas"),
        "current": status.get("currentReplicas"),
        "last_scale_time": status.get("lastScaleTime"),
        "metrics": metrics,
        "conditions": [{"type": c.get("type"), "status": c.get("status"),
                        "reason": c.get("reason"), "message": c.get("message")}
                       for c in status.get("conditions") or []],
        "min_replicas": spec.get("minReplicas", 1),
        "max_replicas": spec.get("maxReplicas"),
        "behavior": spec.get("behavior"),
    }


def pods_cpu(pod_metrics: dict, requests_milli: float | None) -> list[dict]:
    """Each pod's used CPU (metrics.k8s.io, summed over its containers) beside its
    request, in millicores."""
    out = []
    for item in pod_metrics.get("items") or []:
        used = sum(_quantity_milli((c.get("usage") or {}).get("cpu")) or 0.0
                   for c in item.get("containers") or [])
        out.append({"pod": (item.get("metadata") or {}).get("name"),
                    "cpu_used_m": round(used, 1), "cpu_request_m": requests_milli,
                    "window": item.get("window"), "timestamp": item.get("timestamp")})
    return sorted(out, key=lambda p: str(p["pod"]))


def cpu_request_milli(deployment: dict) -> float | None:
    """The pod's CPU request (its containers' summed), as the HPA divides by it."""
    values = [_quantity_milli(((c.get("resources") or {}).get("requests") or {}).get("cpu"))
              for c in containers(pod_spec(deployment) or {})]
    return None if not values or None in values else sum(values)


__all__ = ["WRITTEN_NAME", "check_cpu_requests", "cpu_request_milli", "pods_cpu", "reported",
           "scaled_by_the_hpa", "team_hpa", "uses_cpu_utilization", "written_hpa"]
