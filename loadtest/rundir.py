"""A run's directory and its ``run.json``: what happened, written as it happens.

``run.json`` is rewritten (atomically) at the start, at every stage change
and at the end, so a run that is killed still says what it was doing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

RUN_JSON = "run.json"


def new_run_dir(requested: str, reports: Path = Path("reports")) -> Path:
    """The requested directory, or ``reports/<UTC timestamp>`` with ``latest`` pointing at it."""
    if requested:
        path = Path(requested)
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"--run-dir {requested} is not empty; choose a new directory")
        path.mkdir(parents=True, exist_ok=True)
    else:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        path = reports / stamp
        suffix = 1
        while path.exists():
            suffix += 1
            path = reports / f"{stamp}-{suffix}"
        path.mkdir(parents=True)
    point_latest(path, reports)
    return path


def point_latest(run_dir: Path, reports: Path = Path("reports")) -> None:
    """``reports/latest`` → the newest run, when the run lives under reports/."""
    try:
        if run_dir.resolve().parent != reports.resolve():
            return
        link = reports / "latest"
        tmp = reports / f".latest-{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(run_dir.name)
        os.replace(tmp, link)
    except OSError:
        pass  # a convenience; never worth failing a run over


class RunRecord:
    """The content of run.json, kept in memory and saved on every change."""

    def __init__(self, run_dir: Path, **fields) -> None:
        self.run_dir = Path(run_dir)
        self.data: dict = {
            "run_id": self.run_dir.name,
            "status": "starting",
            "started": time.time(),
            "ended": None,
            "stages": [],
            "stack_events": [],
            "counter": {"before": None, "after": None},
            "totals": {"recorded": None, "locust": None},
            **fields,
        }

    def begin_stage(self, index: int, level: int, users: int) -> dict:
        now = time.time()
        if self.data["stages"] and self.data["stages"][-1]["t_end"] is None:
            self.data["stages"][-1]["t_end"] = now
        stage = {"index": index, "level": level, "t_start": now, "t_ready": None,
                 "t_end": None, "users": users}
        self.data["stages"].append(stage)
        self.save()
        return stage

    def end_stages(self, when: float | None = None) -> None:
        if self.data["stages"] and self.data["stages"][-1]["t_end"] is None:
            self.data["stages"][-1]["t_end"] = when or time.time()

    def save(self) -> None:
        path = self.run_dir / RUN_JSON
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, path)


def load_run(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / RUN_JSON).read_text())
