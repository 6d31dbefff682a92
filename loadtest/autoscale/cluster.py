"""``--autoscale cluster``: the orchestrator's own autoscaler drives the replicas; the
harness only watches and writes down what it did.

Once a second the backend says what its autoscaler reports (Kubernetes: the HPA's
status). Each change of what it reports (the desired or current count, a metric's
value, a condition) is an ``autoscale_decision`` with that report and each pod's CPU
(metrics.k8s.io, asked then only); each change of the desired count is a ``scale_asked`` (by the
autoscaler), and the moment the balancer routes exactly that many replicas its
``scale_ready``, so that every autoscaling check (time to scale, provisioning, SLO
seconds, flaps) and the judgement of each change apply as to the harness's own
autoscalers. The conductor only follows the level (``observes_only``): it never scales.
"""

from __future__ import annotations

import logging
import math
import time

from loadtest.contract import events as ev
from loadtest.contract.plan import AutoscaleSettings
from loadtest.stack import Stack, StackError
from loadtest.stack.base import ClusterAutoscaling

log = logging.getLogger("scalecheck")
POLL_S = 1.0


def report_key(status: dict) -> tuple:
    """What makes one report differ from the last (not the timestamps)."""
    return (status.get("desired"), status.get("current"),
            tuple(sorted((m.get("name") or "", str(m.get("utilization")),
                          str(m.get("average_value")), str(m.get("value")))
                         for m in status.get("metrics") or [])),
            tuple((c.get("type"), c.get("status"), c.get("reason"))
                  for c in status.get("conditions") or []))


def decision_details(status: dict) -> dict:
    """The ``autoscale_decision`` payload of one report: ``final`` is the controller's
    desired count (what the harness's own policies call their decision)."""
    limited = [c for c in status.get("conditions") or []
               if c.get("type") == "ScalingLimited" and c.get("status") == "True"]
    return {"final": status.get("desired"), "desired": status.get("desired"),
            "current": status.get("current"), "hpa": status.get("hpa"),
            "reported_metrics": status.get("metrics") or [],
            "conditions": status.get("conditions") or [],
            "scaling_limited": limited[0].get("reason") if limited else None,
            "behavior": status.get("behavior"),
            "min_replicas": status.get("min_replicas"),
            "max_replicas": status.get("max_replicas"),
            "last_scale_time": status.get("last_scale_time"),
            "pods": status.get("pods") or [],
            "reasons": [f"{c.get('type')}={c.get('status')} ({c.get('reason')})"
                        for c in status.get("conditions") or []]}


class ClusterObserver:
    """Watches the cluster's autoscaler for the conductor, in place of a policy."""

    observes_only = True

    def __init__(self, settings: AutoscaleSettings, stack: Stack, events,
                 first_level: int) -> None:
        if not isinstance(stack, ClusterAutoscaling):
            raise StackError(f"--autoscale cluster: the {stack.name} stack has no autoscaler "
                             "of its own")
        self.settings = settings
        self.stack = stack
        self.events = events
        self._next = 0.0
        self._last_key: tuple | None = None
        self._asked = first_level          # the count the last change asked for
        self._asked_at: float | None = None  # None: that count is routed (ready)
        self._said_failure = False

    def maybe_decide(self, t: float, current: int) -> int | None:
        """The autoscaler's desired count (the conductor follows it; never scales)."""
        if t < self._next:
            return None
        self._next = math.floor(t) + POLL_S
        try:
            status = self.stack.autoscaler_status()
        except StackError as exc:
            if not self._said_failure:
                log.warning("scalecheck: reading the cluster's autoscaler: %s", exc)
                self._said_failure = True
            return None
        self._said_failure = False
        now = time.time()
        if status is not None:
            key = report_key(status)
            if key != self._last_key:
                self._last_key = key
                self._record(now, {**status, "pods": self.stack.autoscaler_pods()})
            desired = status.get("desired")
            # 0 until the controller's first computation (the status exists before it)
            if desired is not None and desired >= 1 and desired != self._asked:
                routed = len(self.stack.replicas())
                self.events.add(ev.SCALE_ASKED, now, level=desired, previous=routed,
                                by="autoscaler")
                self._asked, self._asked_at = desired, now
        self._check_ready()
        return self._asked

    def _check_ready(self) -> None:
        if self._asked_at is None:
            return
        replicas = self.stack.replicas()
        if len(replicas) == self._asked and all(r.state == "up" for r in replicas):
            now = time.time()
            self.events.add(ev.SCALE_READY, now, level=self._asked,
                            seconds=round(now - self._asked_at, 3),
                            hostnames=sorted(r.hostname for r in replicas))
            self._asked_at = None

    def _record(self, now: float, status: dict) -> None:
        details = decision_details(status)
        self.events.add(ev.AUTOSCALE_DECISION, now, policy="cluster",
                        metric=self.settings.metric, target=self.settings.target,
                        source=f"the cluster's HorizontalPodAutoscaler {status.get('hpa')}",
                        **details)
        used = [p["cpu_used_m"] for p in details["pods"]]
        log.info("scalecheck: the cluster's autoscaler: %s -> %s (%s)%s",
                 details["current"], details["desired"],
                 ", ".join(f"{m.get('name')} {m.get('utilization', m.get('average_value'))}"
                           for m in details["reported_metrics"]) or "no metric yet",
                 f"; pods' CPU {used} m" if used else "")


__all__ = ["ClusterObserver", "decision_details", "report_key"]
