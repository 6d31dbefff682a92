"""Time windows of a run: each stage's steady window and each scale change's transition.

A stage's steady window runs from the moment the stack reported it ready to
the stage's end; its transition runs from the stage's start (when the rescale
was asked) to ready, plus a margin, because that is where scale changes hurt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    stage: int
    level: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


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
        })
    if not stages:  # a run without stage bookkeeping: one stage over everything
        stages.append({"index": 0, "level": 0, "t_start": t_min, "t_ready": t_min,
                       "t_end": t_max, "users": None})
    return stages


def steady(stage: dict) -> Window:
    return Window(stage["index"], stage["level"], stage["t_ready"], stage["t_end"])


def transition(stage: dict, margin: float) -> Window:
    return Window(stage["index"], stage["level"], stage["t_start"],
                  min(stage["t_ready"] + margin, stage["t_end"]))
