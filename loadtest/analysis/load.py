"""Read a run directory into a run dict and a records source, or say clearly why not.

Every way a run directory can be malformed (no run.json, a run.json that is
not a run record, a part that is truncated or has columns of the wrong type)
becomes one ``AnalysisInputError`` line. With ``skip_bad_parts`` the readable
parts are analysed and the bad ones are named in ``LoadedRun.bad_parts``; the
verdict then cannot be better than inconclusive.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loadtest.analysis.scan import RecordSource
from loadtest.contract.records import (
    OPTIONAL_COLUMNS,
    REQUESTS_DIR,
    REQUIRED_COLUMNS,
    SCHEMA,
    part_files,
)

#: What the analysis reads (strings cost most to read: only those it uses).
NEEDED = ["t_start", "t_end", "latency_ms", "status", "error", "hostname", "server", "counter",
          "user", "worker", "t_intended", "attempts", "op", "key", "value", "seen", "outcome"]


class AnalysisInputError(Exception):
    """The run directory cannot be analysed; the message is one line."""


@dataclass
class LoadedRun:
    path: Path
    meta: dict
    records: RecordSource  # read window by window, never all at once
    bad_parts: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """All records in one table (small runs and tests only)."""
        return pd.concat(list(self.records.windows(NEEDED)), ignore_index=True)


def load_run(path: Path, rows_per_window: int = 1_000_000,
             skip_bad_parts: bool = False) -> LoadedRun:
    path = Path(path)
    if not path.exists():
        raise AnalysisInputError(f"{path}: no such run directory")
    if not path.is_dir():
        raise AnalysisInputError(f"{path}: not a directory")
    if (path / REQUESTS_DIR).exists() and not (path / REQUESTS_DIR).is_dir():
        raise AnalysisInputError(f"{path / REQUESTS_DIR}: not a directory")
    meta = _load_meta(path)
    files, bad = _good_parts(path, skip_bad_parts)
    return LoadedRun(path, meta, _record_source(path, files, rows_per_window), bad)


def _load_meta(path: Path) -> dict:
    run_json = path / "run.json"
    if not run_json.exists():
        if not any(path.iterdir()):
            raise AnalysisInputError(f"{path}: the run directory is empty")
        raise AnalysisInputError(f"{path}: no run.json (is this a run directory?)")
    problem = not_a_file(run_json)
    if problem:
        raise AnalysisInputError(f"{run_json}: {problem}")
    try:
        meta = json.loads(run_json.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnalysisInputError(f"{run_json}: does not parse as JSON ({exc})") from None
    problem = meta_problem(meta)
    if problem:
        raise AnalysisInputError(f"{run_json}: not a run record ({problem})")
    return meta


#: What a path that is not a regular file is, by its type.
KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
         (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a directory"))


def not_a_file(path: Path) -> str | None:
    """Why ``path`` will not be read, or None for a regular file (or a link to one). A FIFO
    or a device would make a reader wait forever, or read without end."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind}); only files are read"


def _number(value, optional: bool = True) -> bool:
    """A finite real number (JSON lets NaN and Infinity through; the analysis must not)."""
    if value is None:
        return optional
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        math.isfinite(value)


def meta_problem(meta) -> str | None:
    """What is wrong with a run.json's shape, or None; only what the analysis relies on."""
    if not isinstance(meta, dict):
        return "the top level is not an object"
    if not isinstance(meta.get("stages", []), list):
        return "stages is not a list"
    for i, stage in enumerate(meta.get("stages") or []):
        if not isinstance(stage, dict):
            return f"stages[{i}] is not an object"
        for key in ("t_start", "t_ready", "t_end", "level", "index"):
            if not _number(stage.get(key)):
                return f"stages[{i}].{key} is not a number"
    events = meta.get("stack_events", [])
    if not isinstance(events, list):
        return "stack_events is not a list"
    for i, event in enumerate(events or []):
        if not isinstance(event, dict) or not _number(event.get("t"), optional=False) \
                or not isinstance(event.get("event"), str):
            return f"stack_events[{i}] is not an event (t, event)"
        if "level" in event and not _number(event["level"]):
            return f"stack_events[{i}].level is not a number"
    plan = meta.get("plan")
    if isinstance(plan, dict):
        stages = plan.get("stages")
        if stages is not None and (not isinstance(stages, list) or
                                   not all(isinstance(st, dict) for st in stages)):
            return "plan.stages is not a list of objects"
        for i, stage in enumerate(stages or []):
            if not _number(stage.get("level")):
                return f"plan.stages[{i}].level is not a number"
        if plan.get("autoscale") is not None and not isinstance(plan["autoscale"], dict):
            return "plan.autoscale is not an object"
    counter = meta.get("counter", {})
    if counter is not None:
        if not isinstance(counter, dict):
            return "counter is not an object"
        for key in ("before", "after"):
            value = counter.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                return f"counter.{key} is not a whole number"
    totals = meta.get("totals", {})
    if totals is not None:
        if not isinstance(totals, dict):
            return "totals is not an object"
        for key in ("recorded", "locust"):
            if not _number(totals.get(key)):
                return f"totals.{key} is not a number"
    for key in ("status", "run_id"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"{key} is not a string"
    for key in ("plan", "options", "stack"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"{key} is not an object"
    return None


def _good_parts(path: Path, skip_bad: bool) -> tuple[list[Path], list[str]]:
    files = part_files(path)
    if not files:
        raise AnalysisInputError(f"{path}: the run recorded no requests ({REQUESTS_DIR}/ is empty)")
    good, bad = [], []
    for file in files:  # name the bad file, rather than fail somewhere in a scan
        problem = part_problem(file)
        if problem is None:
            good.append(file)
        elif skip_bad:
            bad.append(f"{file.name}: {problem}")
        else:
            raise AnalysisInputError(f"{file}: {problem} (--skip-bad-parts analyses the rest)")
    if not good:
        raise AnalysisInputError(f"{path}: no readable record file ({len(bad)} bad)")
    return good, bad


def part_problem(file: Path) -> str | None:
    problem = not_a_file(file)
    if problem:
        return problem
    try:
        schema = pq.read_schema(file)
    except (pa.ArrowException, OSError) as exc:
        return f"truncated or not a record file ({str(exc).splitlines()[0][:120]})"
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        return f"not a record file (missing {', '.join(missing)})"
    for name in schema.names:
        if name in SCHEMA.names:
            want = SCHEMA.field(name).type
            got = schema.field(name).type
            if got != want and not (pa.types.is_null(got) and name in _NULLABLE):
                return f"column {name} is {got}, not {want}"
    try:
        pq.ParquetFile(file).metadata  # noqa: B018 - reads the footer
    except (pa.ArrowException, OSError) as exc:
        return f"unreadable ({str(exc).splitlines()[0][:120]})"
    return None


_NULLABLE = {"error", "hostname", "counter", "counter_error", "t_intended", "attempts",
             "server", "request_id", "op", "key", "value", "seen", "outcome"}


def _record_source(path: Path, files: list[Path], rows_per_window: int) -> RecordSource:
    folder = path / REQUESTS_DIR
    try:
        source = RecordSource(files, rows_per_window, optional=OPTIONAL_COLUMNS)
        rows = source.stats["rows"]
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise AnalysisInputError(f"{folder}: cannot read records ({str(exc)[:160]})") from None
    if rows == 0:
        raise AnalysisInputError(f"{path}: the run recorded no requests")
    return source


__all__ = ["NEEDED", "AnalysisInputError", "LoadedRun", "load_run"]
