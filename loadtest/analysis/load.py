"""Read a run directory into a run dict and a records table, or say clearly why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from loadtest.records import COLUMNS, REQUESTS_DIR

NEEDED = ["t_start", "t_end", "latency_ms", "status", "error", "hostname", "counter",
          "counter_error", "stage", "scale_level", "user", "worker"]


class AnalysisInputError(Exception):
    """The run directory cannot be analysed; the message is one line."""


@dataclass
class LoadedRun:
    path: Path
    meta: dict
    records: pd.DataFrame


def load_run(path: Path) -> LoadedRun:
    path = Path(path)
    if not path.exists():
        raise AnalysisInputError(f"{path}: no such run directory")
    if not path.is_dir():
        raise AnalysisInputError(f"{path}: not a directory")
    meta = _load_meta(path)
    return LoadedRun(path, meta, _load_records(path))


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


def _load_records(path: Path) -> pd.DataFrame:
    folder = path / REQUESTS_DIR
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
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
        table = ds.dataset(files, format="parquet").to_table(columns=NEEDED)
    except (pa.ArrowException, OSError) as exc:
        raise AnalysisInputError(f"{folder}: cannot read records ({exc})") from None
    if table.num_rows == 0:
        raise AnalysisInputError(f"{path}: the run recorded no requests")
    frame = table.to_pandas(strings_to_categorical=True, self_destruct=True)
    return frame


__all__ = ["COLUMNS", "AnalysisInputError", "LoadedRun", "load_run"]
