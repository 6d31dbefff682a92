"""The per-request record: its schema, and how record files are written and read.

A run's records live in ``<run-dir>/requests/`` as many small Parquet files
(zstd), one per flush. Each is written under a temporary name and renamed, so
a reader never sees half a file and a killed process loses at most the batch
it had not yet flushed.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("t_start", pa.float64()),       # epoch seconds, when the request was sent
    ("t_end", pa.float64()),         # t_start + latency
    ("latency_ms", pa.float64()),
    ("status", pa.int32()),          # HTTP status; 0 = no HTTP response
    ("error", pa.string()),          # "ExceptionClass: message", or null
    ("hostname", pa.string()),       # replica that served it, if it said
    ("counter", pa.int64()),         # counter value it saw, if any
    ("counter_error", pa.string()),  # why there is no counter value
    ("stage", pa.int32()),
    ("scale_level", pa.int32()),
    ("user", pa.int64()),            # per-user id, unique within a worker
    ("worker", pa.string()),
    ("method", pa.string()),
    ("name", pa.string()),
    ("bytes", pa.int64()),
])
COLUMNS = SCHEMA.names
REQUESTS_DIR = "requests"


def table_from_rows(rows: list[tuple]) -> pa.Table:
    """Rows are tuples in ``COLUMNS`` order."""
    columns = list(zip(*rows)) if rows else [[] for _ in COLUMNS]
    return pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, SCHEMA)],
        schema=SCHEMA,
    )


class PartWriter:
    """Writes record batches as numbered Parquet parts, atomically."""

    def __init__(self, run_dir: Path, prefix: str) -> None:
        self.directory = Path(run_dir) / REQUESTS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", prefix)
        self._seq = itertools.count()
        self.written = 0

    def write(self, table: pa.Table) -> Path | None:
        if table.num_rows == 0:
            return None
        path = self.directory / f"part-{self.prefix}-{next(self._seq):06d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
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
