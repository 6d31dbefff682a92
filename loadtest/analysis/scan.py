"""Read a run's records in time order, one bounded window at a time.

Memory must not grow with the run: the analysis never holds all records.
Each window is a time range of ``t_start`` read with a filter, so Parquet's
row-group statistics skip the parts outside it; windows are sized to hold
about ``rows_per_window`` records. Columns a part written by an older
version lacks (``optional``) read as nulls.

A record's replica is the app's own word for it (``hostname``) where the app
said it, else the balancer's (``server``); ``naming`` counts which.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from loadtest.contract.records import SCHEMA


class RecordSource:
    def __init__(self, files: list[Path], rows_per_window: int = 1_000_000,
                 optional: tuple[str, ...] = ()) -> None:
        self.files = files
        # One schema for all parts: a part without an optional column reads it as null.
        self.dataset = ds.dataset([str(f) for f in files], format="parquet", schema=SCHEMA)
        self.rows_per_window = rows_per_window
        self.optional = optional
        self._stats: dict | None = None
        self.naming = {"app": 0, "balancer": 0, "none": 0}  # of the last full scan

    @property
    def stats(self) -> dict:
        """Row count and ranges, from the files' footers where they say (no data read)."""
        if self._stats is None:
            rows, lo, hi, cmin, cmax = 0, math.inf, -math.inf, None, None
            for f in self.files:
                meta = pq.read_metadata(f)
                rows += meta.num_rows
                names = meta.schema.to_arrow_schema().names
                for g in range(meta.num_row_groups):
                    group = meta.row_group(g)
                    s = group.column(names.index("t_start")).statistics
                    e = group.column(names.index("t_end")).statistics
                    c = group.column(names.index("counter")).statistics
                    if s is None or not s.has_min_max or e is None or not e.has_min_max:
                        return self._scan_stats()
                    lo, hi = min(lo, s.min), max(hi, e.max)
                    if c is not None and c.has_min_max:
                        cmin = c.min if cmin is None else min(cmin, c.min)
                        cmax = c.max if cmax is None else max(cmax, c.max)
            self._stats = {"rows": rows, "t_min": lo, "t_max": hi,
                           "counter_min": cmin, "counter_max": cmax}
        return self._stats

    def _scan_stats(self) -> dict:
        table = self.dataset.to_table(columns=["t_start", "t_end", "counter"])
        cmm = pc.min_max(table["counter"]).as_py()
        self._stats = {"rows": table.num_rows,
                       "t_min": pc.min(table["t_start"]).as_py(),
                       "t_max": pc.max(table["t_end"]).as_py(),
                       "counter_min": cmm["min"], "counter_max": cmm["max"]}
        return self._stats

    def windows(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        """DataFrames sorted by t_start, covering the run in ascending time order."""
        st = self.stats
        rows = max(st["rows"], 1)
        span = max(st["t_max"] - st["t_min"], 1e-6)
        count = max(1, math.ceil(rows / self.rows_per_window))
        width = span / count
        field = ds.field("t_start")
        wants_name = "hostname" in columns and "server" in self.dataset.schema.names
        read = list(columns) + (["server"] if wants_name and "server" not in columns else [])
        naming = {"app": 0, "balancer": 0, "none": 0}
        for i in range(count):
            start = st["t_min"] + i * width
            if i == count - 1:
                flt = field >= start
            elif i == 0:
                flt = field < start + width
            else:
                flt = (field >= start) & (field < start + width)
            table = self.dataset.to_table(columns=read, filter=flt if count > 1 else None)
            if table.num_rows == 0:
                continue
            if wants_name:
                table = _named(table, naming)
            frame = table.to_pandas(strings_to_categorical=True, self_destruct=True)
            for name in columns:
                if name in self.optional and frame[name].dtype == object and \
                        not pa.types.is_string(SCHEMA.field(name).type):
                    frame[name] = pd.to_numeric(frame[name])
            starts = frame["t_start"].to_numpy()
            if len(starts) > 1 and not (starts[1:] >= starts[:-1]).all():
                frame = frame.sort_values("t_start", kind="stable", ignore_index=True)
            yield frame  # parts are written in time order: most windows need no sort
        self.naming = naming


def _named(table: pa.Table, naming: dict) -> pa.Table:
    """``hostname``: the app's name for the replica, else the balancer's."""
    app, balancer = table["hostname"], table["server"]
    has_app = pc.is_valid(app)
    naming["app"] += pc.sum(has_app).as_py() or 0
    naming["balancer"] += pc.sum(pc.and_(pc.invert(has_app), pc.is_valid(balancer))).as_py() \
        or 0
    naming["none"] += table.num_rows - (pc.sum(pc.is_valid(pc.coalesce(app, balancer))).as_py()
                                        or 0)
    return table.set_column(table.column_names.index("hostname"), "hostname",
                            pc.coalesce(app, balancer))


__all__ = ["RecordSource"]
