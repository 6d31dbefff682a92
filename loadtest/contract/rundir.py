"""A run's directory and its ``run.json``: what happened, written as it happens.

``RunRecord`` owns the layout of ``run.json``; the rest of the harness tells
it what happened through its methods. It is rewritten (atomically) at the
start, at every stage change and scale event, and at the end, so a run that
is killed still says what it was doing.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import math
import os
import time
from pathlib import Path

RUN_JSON = "run.json"
RESERVE = ".scalecheck-reserve"
RESERVE_BYTES = 512 * 1024  # room kept for run.json's last word on a disk that fills up
PAGE = 4096  # what a file's last block may take beyond its length
#: The errors of a disk with no room left (a full filesystem, a user's quota).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger("scalecheck")

#: How a run ended. ``completed``: the plan ran to its end. ``interrupted``:
#: Ctrl-C, SIGTERM or a stop from the web UI before that. ``failed``: the
#: harness or the stack could not go on (the message says why).
STATUSES = ("starting", "ready", "running", "completed", "interrupted", "failed")


def choose_run_dir(requested: str, reports: Path = Path("reports")) -> Path:
    """The requested directory, or a new ``reports/<UTC timestamp>``, always absolute.

    Absolute because Docker, Compose and Swarm are handed paths under it (bind mounts,
    the resolved Compose file): a relative path means something else to each of them.
    The default is claimed at once (an empty directory made here), so that two runs
    started in the same second never share one."""
    if requested:
        return Path(requested).expanduser().absolute()
    reports = reports.absolute()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for suffix in range(1, 10_000):
        path = reports / (stamp if suffix == 1 else f"{stamp}-{suffix}")
        try:
            reports.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError:
            return path  # create_run_dir reports why it cannot be made
    raise FileExistsError(f"{reports}: no free run directory for {stamp}")


def create_run_dir(path: Path, reports: Path = Path("reports")) -> Path:
    """Create the run directory; ``reports/latest`` then points at it."""
    path = Path(path).absolute()
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"--run-dir {path} is not empty; choose a new directory")
    path.mkdir(parents=True, exist_ok=True)
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
            "plan": None,
            "stages": [],
            "stack_events": [],
            "counter": {"before": None, "after": None},
            "totals": {"recorded": None, "locust": None},
            "warnings": [],
            **fields,
        }
        self._save_failed = False
        self.last_error: OSError | None = None  # the last error a save met (even got round)
        self.reserve_used = False  # the disk filled up: run.json took from its reserve
        self._reserve()

    def _reserve(self) -> None:
        """Hold some disk space, given back when run.json cannot be written otherwise:
        a full disk (records and logs fill it) must not leave the record unfinished."""
        try:
            with open(self.run_dir / RESERVE, "wb") as fh:
                fh.truncate(0)
                fh.write(b"\0" * RESERVE_BYTES)
        except OSError:
            pass

    def release_reserve(self) -> None:
        (self.run_dir / RESERVE).unlink(missing_ok=True)

    # -- the run's life ---------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.data["status"]

    def describe_stack(self, stack: dict, url: str) -> None:
        self.data.update(stack=stack, url=url, run_dir=str(self.run_dir))

    def set_plan(self, plan: dict, options: dict) -> None:
        self.data["plan"] = plan
        self.data["options"] = options

    def mark_ready(self) -> None:
        self.data["status"] = "ready"
        self.save()

    def mark_running(self, counter_before: int | None) -> None:
        self.data.update(status="running", test_started=time.time())
        self.data["counter"]["before"] = counter_before
        self.save()

    def fail(self, error: str) -> None:
        """The harness or the stack could not go on; keep the first reason."""
        if self.data["status"] not in ("completed", "interrupted", "failed"):
            self.data["status"] = "failed"
        self.data.setdefault("error", error)
        self.save()

    def conclude(self, *, finished: bool, counter_after: int | None, totals: dict) -> None:
        """Everything the record needs at the end, before anything else is written."""
        self.end_stages()
        self.data["counter"]["after"] = counter_after
        self.data["totals"] = totals
        if self.data["status"] in ("starting", "ready", "running"):
            self.data["status"] = "completed" if finished else "interrupted"
        self.data["ended"] = time.time()
        self.save()

    def add_warning(self, text: str) -> None:
        self.data["warnings"].append({"t": time.time(), "text": text})
        self.save()

    # -- stages and events ------------------------------------------------------------

    def begin_stage(self, index: int, level: int, users: int | None) -> dict:
        now = time.time()
        if self.data["stages"] and self.data["stages"][-1]["t_end"] is None:
            self.data["stages"][-1]["t_end"] = now
        stage = {"index": index, "level": level, "t_start": now, "t_ready": None,
                 "t_end": None, "users": users}
        self.data["stages"].append(stage)
        self.save()
        return stage

    def stage_ready(self, stage: dict, asked: float, ready: float) -> None:
        stage["scale_asked"] = asked
        stage["t_ready"] = ready
        self.save()

    def stage_failed(self, stage: dict, error: str) -> None:
        stage["error"] = error
        self.fail(error)

    def end_stages(self, when: float | None = None) -> None:
        if self.data["stages"] and self.data["stages"][-1]["t_end"] is None:
            self.data["stages"][-1]["t_end"] = when or time.time()

    def set_events(self, events: list[dict]) -> None:
        self.data["stack_events"] = list(events)

    def set_load_counts(self, dropped_by_second: dict[int, int]) -> None:
        self.data["dropped_arrivals"] = {
            "total": int(sum(dropped_by_second.values())),
            "by_second": [[int(k), int(v)] for k, v in sorted(dropped_by_second.items())],
        }

    # -- disk --------------------------------------------------------------------------

    def save(self) -> bool:
        """Write run.json atomically. On a full disk: take room from the reserve (only what
        this write needs, so that later ones find some too), and as a last resort rewrite
        run.json in the blocks it already has. Say once when it cannot be written."""
        path = self.run_dir / RUN_JSON
        text = _dumps(self.data)
        try:
            self._replace(path, text)
        except OSError as exc:
            self.last_error = exc
            if exc.errno not in DISK_FULL or not self._save_full(path, text, exc):
                return self._save_error(path, exc)
        self._save_failed = False
        return True

    def _save_full(self, path: Path, text: str, exc: OSError) -> bool:
        """The disk is full: the reserve gives what this write needs, else run.json is
        rewritten in place (compact) if its blocks hold it."""
        if self._take_from_reserve(len(text.encode()) + PAGE):
            if not self.reserve_used:
                log.error("scalecheck: the disk is full (%s); using the space kept for "
                          "run.json", exc.strerror or exc)
            self.reserve_used = True
            try:
                self._replace(path, text)
                return True
            except OSError:
                pass
        return _overwrite_in_place(path, _dumps(self.data, indent=None))

    def _save_error(self, path: Path, exc: OSError) -> bool:
        if not self._save_failed:
            log.error("scalecheck: cannot write %s: %s", path, exc.strerror or exc)
        self._save_failed = True
        return False

    @staticmethod
    def _replace(path: Path, text: str) -> None:
        tmp = path.with_suffix(".json.tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def _take_from_reserve(self, need: int) -> bool:
        """Give ``need`` bytes of the reserve back to the disk; False when it is spent."""
        reserve = self.run_dir / RESERVE
        try:
            size = reserve.stat().st_size
            if size <= need:
                reserve.unlink()
            else:
                os.truncate(reserve, size - need)
            return size > 0
        except OSError:
            return False


def _dumps(data: dict, indent: int | None = 2) -> str:
    """run.json's text: JSON other tools can read, so never NaN nor Infinity (a value that
    is not finite is written as null)."""
    try:
        return json.dumps(data, indent=indent, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(data), indent=indent, default=str, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _overwrite_in_place(path: Path, text: str) -> bool:
    """Rewrite ``path`` within the blocks it already holds (no new room needed); False,
    leaving it as it was, when ``text`` would need more."""
    data = text.encode()
    try:
        if len(data) > path.stat().st_blocks * 512:
            return False
        with open(path, "r+b") as fh:
            fh.write(data)
            fh.truncate(len(data))
        log.error("scalecheck: the disk is full; run.json rewritten in place")
        return True
    except OSError:
        return False
