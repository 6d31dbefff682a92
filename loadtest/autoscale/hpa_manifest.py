"""A team's HorizontalPodAutoscaler manifest, read as the simulation's knobs.

``--hpa-manifest FILE`` lets the embedded stack and Compose run the HPA the team ships
(``autoscaling/v2``), the same file ``--stack kubernetes`` applies for real, so one HPA is
tested everywhere. Read here: ``minReplicas``/``maxReplicas``, the one metric (CPU
utilisation of the request, or a Pods metric's average value), ``behavior`` (each
direction's ``stabilizationWindowSeconds``, ``policies``, ``selectPolicy`` and
``tolerance``), and whether there is a ``behavior`` block at all (without one the
controller takes its older path).

What the simulation cannot honour is refused in one line naming the field, never
silently ignored: External, Object and ContainerResource metrics, several metrics,
memory, an ``averageValue`` CPU target, a Pods metric the harness does not measure.
The defaults are Kubernetes' own (``pkg/apis/autoscaling/v2/defaults.go``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from loadtest.autoscale.hpa import HpaKnobs, Policy
from loadtest.contract.plan import DEFAULT_DOWN, DEFAULT_UP, HpaBehavior

#: Pods metrics the harness measures per replica, by the names a team would give them.
POD_METRICS = {"requests_per_second": "rps", "rps": "rps", "http_requests_per_second": "rps",
               "inflight": "inflight", "requests_in_flight": "inflight"}


class ManifestError(ValueError):
    """The manifest cannot be simulated; the message is one line naming the field."""


@dataclass(frozen=True)
class HpaManifest:
    name: str
    target_kind: str        # the workload it scales (spec.scaleTargetRef.kind)
    target_name: str
    metric: str             # "cpu" | "rps" | "inflight"
    knobs: HpaKnobs

    @property
    def behavior(self) -> HpaBehavior:
        """The knobs' ``behavior`` part, as the run plan carries it (the rest is flat)."""
        return HpaBehavior(**{f.name: getattr(self.knobs, f.name) for f in fields(HpaBehavior)})


def read(path: Path) -> HpaManifest:
    """The HPA in ``path`` (a file of one or more YAML documents: the first HPA)."""
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except OSError as exc:
        raise ManifestError(f"--hpa-manifest {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"--hpa-manifest {path}: not YAML "
                            f"({str(exc).splitlines()[0]})") from None
    hpas = [d for d in docs if isinstance(d, dict) and d.get("kind") == "HorizontalPodAutoscaler"]
    if not hpas:
        raise ManifestError(f"--hpa-manifest {path}: no HorizontalPodAutoscaler in it")
    return parse(hpas[0], f"--hpa-manifest {path}")


def parse(doc: dict, where: str = "the manifest") -> HpaManifest:
    """One HPA document (a dict) as knobs; ManifestError names what cannot be simulated."""
    api = str(doc.get("apiVersion", ""))
    if api != "autoscaling/v2":
        raise ManifestError(f"{where}: apiVersion {api!r}: the simulation reads "
                            "autoscaling/v2")
    spec = _dict(doc.get("spec"), f"{where}: spec")
    ref = _dict(spec.get("scaleTargetRef"), f"{where}: spec.scaleTargetRef")
    low = _int(spec.get("minReplicas", 1), f"{where}: spec.minReplicas", 1)
    high = _int(spec.get("maxReplicas"), f"{where}: spec.maxReplicas", 1)
    if low > high:
        raise ManifestError(f"{where}: spec.minReplicas {low} is above spec.maxReplicas {high}")
    metric, target = _metric(spec.get("metrics"), where)
    behavior = spec.get("behavior")
    knobs = HpaKnobs(target=target, min_replicas=low, max_replicas=high, cpu=metric == "cpu",
                     legacy=behavior is None,
                     **(_behavior(_dict(behavior, f"{where}: spec.behavior"), where)
                        if behavior is not None else {}))
    name = str((doc.get("metadata") or {}).get("name", "?"))
    return HpaManifest(name, str(ref.get("kind", "")), str(ref.get("name", "")), metric, knobs)


def _metric(metrics, where: str) -> tuple[str, float]:
    if metrics is None:  # the controller's default: 80 % CPU utilisation
        return "cpu", 80.0
    if not isinstance(metrics, list) or not metrics:
        raise ManifestError(f"{where}: spec.metrics must be a list of one metric")
    if len(metrics) > 1:
        raise ManifestError(f"{where}: spec.metrics has {len(metrics)} metrics; the "
                            "simulation follows one (the controller takes the highest of "
                            "several)")
    metric = _dict(metrics[0], f"{where}: spec.metrics[0]")
    kind = metric.get("type")
    field = f"{where}: spec.metrics[0]"
    if kind == "Resource":
        resource = _dict(metric.get("resource"), f"{field}.resource")
        if resource.get("name") != "cpu":
            raise ManifestError(f"{field}.resource.name {resource.get('name')!r}: the "
                                "simulation measures cpu only")
        target = _dict(resource.get("target"), f"{field}.resource.target")
        if target.get("type") != "Utilization":
            raise ManifestError(f"{field}.resource.target.type {target.get('type')!r}: the "
                                "simulation reads Utilization (a share of the request)")
        return "cpu", float(_int(target.get("averageUtilization"),
                                 f"{field}.resource.target.averageUtilization", 1))
    if kind == "Pods":
        pods = _dict(metric.get("pods"), f"{field}.pods")
        name = str((pods.get("metric") or {}).get("name", ""))
        if name not in POD_METRICS:
            raise ManifestError(f"{field}.pods.metric.name {name!r}: the harness measures "
                                f"{', '.join(sorted(POD_METRICS))} per replica")
        target = _dict(pods.get("target"), f"{field}.pods.target")
        if target.get("type") != "AverageValue":
            raise ManifestError(f"{field}.pods.target.type {target.get('type')!r}: a Pods "
                                "metric's target is an AverageValue")
        return POD_METRICS[name], _quantity(target.get("averageValue"),
                                            f"{field}.pods.target.averageValue")
    raise ManifestError(f"{field}.type {kind!r}: the simulation cannot measure "
                        "External, Object or ContainerResource metrics")


def _behavior(behavior: dict, where: str) -> dict:
    out: dict = {}
    for direction, key, default_window, defaults in (
            ("up", "scaleUp", 0, DEFAULT_UP), ("down", "scaleDown", 300, DEFAULT_DOWN)):
        field = f"{where}: spec.behavior.{key}"
        rules = _dict(behavior.get(key) or {}, field)
        window = rules.get("stabilizationWindowSeconds", default_window)
        out[f"scale_{direction}_window"] = float(_int(window,
                                                      f"{field}.stabilizationWindowSeconds", 0))
        select = rules.get("selectPolicy", "Max")
        if select not in ("Max", "Min", "Disabled"):
            raise ManifestError(f"{field}.selectPolicy {select!r}: Max, Min or Disabled")
        out[f"select_{direction}"] = select
        if "tolerance" in rules:
            out[f"tolerance_{direction}"] = _quantity(rules["tolerance"], f"{field}.tolerance")
        policies = rules.get("policies")
        out[f"{direction}_policies"] = defaults if policies is None else \
            tuple(_policy(p, f"{field}.policies[{i}]") for i, p in enumerate(policies))
    return out


def _policy(policy, field: str) -> Policy:
    policy = _dict(policy, field)
    kind = policy.get("type")
    if kind not in ("Pods", "Percent"):
        raise ManifestError(f"{field}.type {kind!r}: Pods or Percent")
    return Policy(kind, float(_int(policy.get("value"), f"{field}.value", 1)),
                  float(_int(policy.get("periodSeconds"), f"{field}.periodSeconds", 1)))


def _dict(value, field: str) -> dict:
    if not isinstance(value, dict):
        raise ManifestError(f"{field}: expected a mapping")
    return value


def _int(value, field: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ManifestError(f"{field}: expected a whole number of at least {least}, "
                            f"got {value!r}")
    return value


def _quantity(value, field: str) -> float:
    """A Kubernetes quantity as a number: 10, 0.5, "500m", "1.5"."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ManifestError(f"{field}: {value!r} is not a quantity (e.g. 10, 500m)") from None
    if not number >= 0 or number == float("inf"):
        raise ManifestError(f"{field}: {value!r} must be 0 or more")
    return number
