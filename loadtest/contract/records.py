"""The per-request record: its schema, its named type, and how record files are written and read.

A run's records live in ``<run-dir>/requests/`` as many small Parquet files
(zstd), one per flush. Each is written under a temporary name and renamed, so
a reader never sees half a file and a killed process loses at most the batch
it had not yet flushed.

``Record`` is the one definition of a record's fields; ``SCHEMA`` gives their
Arrow types, and the module refuses to import if the two disagree, so a row
can never land in the wrong column.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class Record(NamedTuple):
    """One request, as the collector saw it."""

    t_start: float            # epoch s, read before the request was sent (a lower bound)
    t_end: float              # epoch s, read when the listener got the response (upper bound)
    latency_ms: float         # Locust's response time
    status: int               # HTTP status; 0 = no HTTP response
    error: str | None         # "ExceptionClass: message", "HTTP 503", or null
    hostname: str | None      # replica that served it, if it said
    counter: int | None       # counter value it saw, if any
    counter_error: str | None  # why there is no counter value
    stage: int                # index of the plan's stage when it was sent
    scale_level: int          # replicas the plan asked for when it was sent (0: not controlled)
    user: int                 # the scenario's client id (context()), else -1-n for the
                              # n-th Locust user of its worker; -1: not known
    worker: str
    method: str
    name: str
    bytes: int
    t_intended: float | None  # open model: when the arrival was due (epoch s); else null
    attempts: int | None = None  # times it went on the wire (1 + hidden resends); null: not counted
    server: str | None = None  # the replica that answered, as the balancer names it
    request_id: str | None = None  # the X-Scalecheck-Id it carried (joins it to the balancer's log)
    op: str | None = None      # what it did to the app's state (loadtest.ops): write, read, ...
    key: str | None = None     # ... to which key
    value: str | None = None   # ... sending this (JSON)
    seen: str | None = None    # ... and seeing this (JSON)
    outcome: str | None = None  # ... with this outcome, when the scenario declared one


SCHEMA = pa.schema([
    ("t_start", pa.float64()),
    ("t_end", pa.float64()),
    ("latency_ms", pa.float64()),
    ("status", pa.int32()),
    ("error", pa.string()),
    ("hostname", pa.string()),
    ("counter", pa.int64()),
    ("counter_error", pa.string()),
    ("stage", pa.int32()),
    ("scale_level", pa.int32()),
    ("user", pa.int64()),
    ("worker", pa.string()),
    ("method", pa.string()),
    ("name", pa.string()),
    ("bytes", pa.int64()),
    ("t_intended", pa.float64()),
    ("attempts", pa.int32()),
    ("server", pa.string()),
    ("request_id", pa.string()),
    ("op", pa.string()),
    ("key", pa.string()),
    ("value", pa.string()),
    ("seen", pa.string()),
    ("outcome", pa.string()),
])
COLUMNS: list[str] = SCHEMA.names
if tuple(COLUMNS) != Record._fields:  # pragma: no cover - a programming error, caught at import
    raise ImportError(f"records: Record fields {Record._fields} do not match SCHEMA {COLUMNS}")

#: Columns a record file written by an older version may lack; they read as null.
OPTIONAL_COLUMNS = ("t_intended", "attempts", "server", "request_id", "op", "key", "value",
                    "seen", "outcome")
REQUIRED_COLUMNS = [c for c in COLUMNS if c not in OPTIONAL_COLUMNS]
REQUESTS_DIR = "requests"


def is_error(status):
    """The one definition of a failed request: no HTTP response, or a 4xx/5xx status.

    Works on an int or a numpy array of statuses. A 200 whose body carried no
    counter value is not an error: it is an *unknown outcome* (see consistency).
    """
    if isinstance(status, np.ndarray):
        return (status == 0) | (status >= 400)
    return status == 0 or status >= 400


def table_from_records(rows: list[Record]) -> pa.Table:
    """A batch of records as an Arrow table in ``SCHEMA``."""
    columns = list(zip(*rows)) if rows else [[] for _ in COLUMNS]
    return pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, SCHEMA)],
        schema=SCHEMA,
    )


class PartWriter:
    """Writes record batches as numbered Parquet parts, atomically. A write that fails is
    kept in ``last_error`` (whoever watches the disk reads it: ``roles.disk``)."""

    def __init__(self, run_dir: Path, prefix: str) -> None:
        self.directory = Path(run_dir) / REQUESTS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)
        self._seq = itertools.count()
        self.written = 0
        self.last_error: OSError | None = None

    def write(self, table: pa.Table) -> Path | None:
        if table.num_rows == 0:
            return None
        path = self.directory / f"part-{self.prefix}-{next(self._seq):06d}.parquet"
        tmp = path.with_suffix(".tmp")
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)  # a full disk must not leave half a part behind
            if isinstance(exc, OSError):
                self.last_error = exc
            raise
        self.written += table.num_rows
        return path


def part_files(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / REQUESTS_DIR).glob("*.parquet"))


def ipc_bytes(table: pa.Table) -> bytes:
    """Serialise a batch for Locust's messaging (workers to master)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def table_from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
