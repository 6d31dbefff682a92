"""Time windows of a run, from its record: stages, segments, transitions, faults.

- A **stage** is the user's plan: from its start (when its rescale was asked)
  to its end; its *steady window* runs from the moment the stack said it was
  ready to the stage's end.
- A **segment** is the unit of analysis: a stretch of time during which the
  same replicas were in service and no scale change was under way. Segments
  are cut at every scale event (asked, ready), every replica that joined or
  left (removed, died), whoever caused it: the plan, the autoscaler, a fault.
- A **transition** runs from a scale change being asked to the stack saying
  it is ready, plus a margin: that is where scale changes hurt.
- A **fault window** runs from a fault being applied to its end.

Pure functions of run.json's content; the records are not read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from loadtest.contract import events as ev


@dataclass(frozen=True)
class Window:
    key: str          # what this window is, e.g. "stage 1", "segment 3"
    start: float
    end: float
    level: int = 0

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


@dataclass
class Segment:
    index: int
    start: float
    end: float
    hostnames: list[str]          # in service throughout
    stage: int                    # the plan's stage it falls in
    planned_level: int
    faults: list[int] = field(default_factory=list)  # faults active during it

    @property
    def level(self) -> int:
        return len(self.hostnames)

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)

    def window(self) -> Window:
        return Window(f"segment {self.index}", self.start, self.end, self.level)


def stage_windows(meta: dict, t_min: float, t_max: float) -> list[dict]:
    """Stages with numeric start/ready/end, filled in from the records if the run was cut short."""
    stages = []
    for i, stage in enumerate(meta.get("stages") or []):
        start = stage.get("t_start") or t_min
        end = stage.get("t_end") or t_max
        ready = stage.get("t_ready") or start
        stages.append({
            "index": stage.get("index", i),
            "level": int(stage.get("level") or 0),
            "t_start": float(start),
            "t_ready": float(min(max(ready, start), end)),
            "t_end": float(end),
            "users": stage.get("users"),
            "ready": stage.get("t_ready") is not None,
        })
    if not stages:  # a run without stage bookkeeping: one stage over everything
        stages.append({"index": 0, "level": 0, "t_start": t_min, "t_ready": t_min,
                       "t_end": t_max, "users": None, "ready": True})
    return stages


def steady(stage: dict) -> Window:
    return Window(f"stage {stage['index']}", stage["t_ready"], stage["t_end"], stage["level"])


def service_intervals(events: list[dict]) -> dict[str, dict]:
    """Per replica: when it was added, when its removal began and ended, when it died."""
    out: dict[str, dict] = {}
    for event in events or []:
        name = event.get("hostname")
        kind = event.get("event")
        if not name or kind not in (ev.REPLICA_ADDED, ev.REPLICA_REMOVING, ev.REPLICA_REMOVED,
                                    ev.REPLICA_DIED):
            continue
        entry = out.setdefault(name, {"added": None, "removing": None, "removed": None,
                                      "died": None})
        key = {ev.REPLICA_ADDED: "added", ev.REPLICA_REMOVING: "removing",
               ev.REPLICA_REMOVED: "removed", ev.REPLICA_DIED: "died"}[kind]
        if entry[key] is None:
            entry[key] = event["t"]
    return out


def out_of_service(interval: dict) -> float:
    ends = [t for t in (interval["removing"], interval["died"]) if t is not None]
    return min(ends) if ends else math.inf


def in_service(interval: dict, window: Window) -> float:
    """Seconds of ``window`` during which the balancer could route to the replica."""
    start = interval["added"] if interval["added"] is not None else -math.inf
    return max(0.0, min(out_of_service(interval), window.end) - max(start, window.start))


def transitions(events: list[dict], margin: float, lead: float = 0.0) -> list[dict]:
    """Each scale change: asked → ready (+ margin); a change that never got ready ends at
    the next change or at the end of time. ``t_from``: where its window begins, ``lead``
    before it was asked (requests then in flight were struck by it; a replica stopped
    under them cuts them), never before the previous change's window ends."""
    out = []
    pending = None
    for event in sorted(events or [], key=lambda e: e["t"]):
        if event["event"] == ev.SCALE_ASKED:
            if pending is not None:
                pending["t_end"] = event["t"]
                out.append(pending)
            pending = {"t_start": event["t"], "t_ready": None, "level": event.get("level"),
                       "previous": event.get("previous"), "by": event.get("by", "plan")}
        elif event["event"] in (ev.SCALE_READY, ev.SCALE_FAILED) and pending is not None:
            pending["t_ready"] = event["t"]
            pending["t_end"] = event["t"] + margin
            pending["failed"] = event["event"] == ev.SCALE_FAILED
            out.append(pending)
            pending = None
    if pending is not None:
        pending["t_end"] = math.inf
        out.append(pending)
    previous_end = -math.inf
    for tr in out:
        tr["t_from"] = max(tr["t_start"] - lead, previous_end)
        previous_end = tr["t_end"]
    # the very first scale (bringing the stack up) is not a change under load
    return [t for t in out if t.get("by") != "up"]


def fault_windows(events: list[dict]) -> list[dict]:
    """Each fault: its kind, when it was asked/applied/ended, and what the stack said."""
    faults: dict[int, dict] = {}
    for event in sorted(events or [], key=lambda e: e["t"]):
        kind = event.get("event")
        if kind not in (ev.FAULT_ASKED, ev.FAULT_APPLIED, ev.FAULT_ENDED, ev.FAULT_FAILED):
            continue
        index = event.get("fault", -1)
        entry = faults.setdefault(index, {"index": index, "kind": event.get("kind"),
                                          "spec": None, "asked": None, "applied": None,
                                          "ended": None, "failed": None, "details": {}})
        entry["kind"] = entry["kind"] or event.get("kind")
        if kind == ev.FAULT_ASKED:
            entry["asked"] = event["t"]
            entry["spec"] = event.get("spec")
        elif kind == ev.FAULT_APPLIED:
            entry["applied"] = event["t"]
            entry["details"].update({k: v for k, v in event.items()
                                     if k not in ("t", "event", "fault", "kind")})
        elif kind == ev.FAULT_ENDED:
            entry["ended"] = event["t"]
            entry["details"].update({k: v for k, v in event.items()
                                     if k not in ("t", "event", "fault", "kind")})
        else:
            entry["failed"] = event.get("error")
    return [faults[k] for k in sorted(faults)]


def fault_span(fault: dict, lead: float, settle: float) -> tuple[float, float]:
    """When a fault disturbs the run: from ``lead`` before it was applied (requests then
    in flight were struck by it) to ``settle`` after it ended."""
    return fault["applied"] - lead, (fault["ended"] or fault["applied"]) + settle


def segments(meta: dict, stages: list[dict], t_min: float, t_max: float,
             margin: float, fault_settle: float = 5.0, fault_lead: float = 0.0,
             transition_lead: float = 0.0) -> list[Segment]:
    """Stretches of constant replica set with no scale change under way. A fault's
    stretch (from ``fault_lead`` before it was applied, when the requests it struck in
    flight had started, to ``fault_settle`` after its end) is a segment of its own,
    marked with the fault, so steady segments stay steady."""
    events = meta.get("stack_events") or []
    intervals = service_intervals(events)
    trans = transitions(events, margin, transition_lead)
    faults = fault_windows(events)
    spans = [(f["index"], *fault_span(f, fault_lead, fault_settle))
             for f in faults if f["applied"] is not None]
    cuts = {t_min, t_max}
    for _index, a, b in spans:
        cuts.update(t for t in (a, b) if t_min < t < t_max)
    for iv in intervals.values():
        for t in (iv["added"], out_of_service(iv)):
            if t is not None and t_min < t < t_max:
                cuts.add(t)
    for tr in trans:
        for t in (tr["t_from"], tr["t_end"]):
            if t_min < t < t_max:
                cuts.add(t)
    for stage in stages:
        if t_min < stage["t_start"] < t_max:
            cuts.add(stage["t_start"])
    points = sorted(cuts)
    out: list[Segment] = []
    for a, b in zip(points, points[1:]):
        if b - a <= 1e-6:
            continue
        mid = (a + b) / 2
        if any(tr["t_from"] <= mid < tr["t_end"] for tr in trans):
            continue  # a transition: reported as such, not as a segment
        if intervals:
            hosts = [h for h, iv in intervals.items()
                     if (iv["added"] is None or iv["added"] <= mid) and mid < out_of_service(iv)]
        else:
            hosts = []  # an uncontrolled stack: the replicas are whoever answered
        stage = next((s for s in stages if s["t_start"] <= mid < s["t_end"]), stages[-1])
        active = [index for index, a, b in spans if a <= mid < b]
        if out and out[-1].hostnames == hosts and out[-1].stage == stage["index"] \
                and out[-1].end == a and out[-1].faults == active:
            out[-1].end = b  # same replicas, same stage: one segment
            continue
        out.append(Segment(len(out), a, b, _natural_sorted(hosts), stage["index"],
                           stage["level"], active))
    return out


def _natural_sorted(names):
    return sorted(names, key=natural)


def natural(name: str):
    """hello-10 after hello-9."""
    head, _, tail = str(name).rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (str(name), -1)
