"""Read a run directory into a run dict and a records table, or say clearly why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from loadtest.analysis.scan import RecordSource
from loadtest.records import COLUMNS, REQUESTS_DIR, part_files

NEEDED = ["t_start", "t_end", "latency_ms", "status", "error", "hostname", "counter",
          "counter_error", "stage", "scale_level", "user", "worker"]


class AnalysisInputError(Exception):
    """The run directory cannot be analysed; the message is one line."""


@dataclass
class LoadedRun:
    path: Path
    meta: dict
    records: RecordSource  # read window by window, never all at once

    def frame(self) -> pd.DataFrame:
        """All records in one table (small runs and tests only)."""
        return pd.concat(list(self.records.windows(NEEDED)), ignore_index=True)


def load_run(path: Path, rows_per_window: int = 1_000_000) -> LoadedRun:
    path = Path(path)
    if not path.exists():
        raise AnalysisInputError(f"{path}: no such run directory")
    if not path.is_dir():
        raise AnalysisInputError(f"{path}: not a directory")
    meta = _load_meta(path)
    return LoadedRun(path, meta, _record_source(path, rows_per_window))


def _load_meta(path: Path) -> dict:
    run_json = path / "run.json"
    if not run_json.exists():
        if not any(path.iterdir()):
            raise AnalysisInputError(f"{path}: the run directory is empty")
        raise AnalysisInputError(f"{path}: no run.json (is this a run directory?)")
    try:
        meta = json.loads(run_json.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnalysisInputError(f"{run_json}: does not parse as JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("stages", []), list):
        raise AnalysisInputError(f"{run_json}: not a run record (no stages list)")
    return meta


def _record_source(path: Path, rows_per_window: int) -> RecordSource:
    folder = path / REQUESTS_DIR
    files = part_files(path)
    if not files:
        raise AnalysisInputError(f"{path}: the run recorded no requests ({REQUESTS_DIR}/ is empty)")
    for file in files:  # name the bad file, rather than fail somewhere in a scan
        try:
            schema = pq.read_schema(file)
        except (pa.ArrowException, OSError) as exc:
            raise AnalysisInputError(
                f"{file}: truncated or not a record file ({str(exc).splitlines()[0][:120]})"
            ) from None
        missing = [c for c in NEEDED if c not in schema.names]
        if missing:
            raise AnalysisInputError(f"{file}: not a record file (missing {', '.join(missing)})")
    try:
        source = RecordSource(files, rows_per_window)
        rows = source.stats["rows"]
    except (pa.ArrowException, OSError) as exc:
        raise AnalysisInputError(f"{folder}: cannot read records ({exc})") from None
    if rows == 0:
        raise AnalysisInputError(f"{path}: the run recorded no requests")
    return source


__all__ = ["COLUMNS", "AnalysisInputError", "LoadedRun", "load_run"]
