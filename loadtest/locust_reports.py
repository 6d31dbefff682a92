"""Locust's own statistics (CSV) and HTML report, kept in the run directory too.

A failing writer (a full disk) logs one line and stops; it never takes the
run, or the harness's own record, down with it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gevent
from locust import stats as locust_stats

log = logging.getLogger("scalecheck")


class LocustReports:
    def __init__(self, environment, parsed, run_dir: Path) -> None:
        self.environment = environment
        self._writer = None
        self._greenlet = None
        if getattr(parsed, "html_file", None) is None:
            parsed.html_file = str(run_dir / "locust-report.html")
        if getattr(parsed, "csv_prefix", None) is None:
            self._writer = locust_stats.StatsCSVFileWriter(
                environment, locust_stats.PERCENTILES_TO_REPORT, str(run_dir / "locust"),
                full_history=False)

    def start(self) -> None:
        if self._writer is not None and self._greenlet is None:
            self._greenlet = gevent.spawn(self._write_loop)

    def _write_loop(self) -> None:
        try:
            self._writer.stats_writer()
        except OSError as exc:
            log.error("scalecheck: Locust's CSV statistics could not be written (%s); "
                      "the run goes on", exc.strerror or exc)

    def close(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        if self._writer is not None:
            try:
                self._writer.close_files()
            except OSError as exc:
                log.error("scalecheck: closing Locust's CSV files: %s", exc.strerror or exc)
            self._writer = None
