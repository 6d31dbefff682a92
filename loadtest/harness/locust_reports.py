"""Locust's own statistics (CSV) and HTML report, kept in the run directory too.

A failing writer (a full disk) logs one line and stops; it never takes the
run, or the harness's own record, down with it. The HTML report (the default one in the
run directory, or the user's ``--html``) is written here rather than by Locust, which
writes it after the test with no guard: on a full disk its traceback ended the harness
with exit code 1 before run.json had its last word.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import gevent
from locust import stats as locust_stats
from locust.html import get_html_report, process_html_filename

log = logging.getLogger("scalecheck")


class LocustReports:
    def __init__(self, environment, parsed, run_dir: Path) -> None:
        self.environment = environment
        self._writer = None
        self._greenlet = None
        self._parsed = parsed
        self._html = getattr(parsed, "html_file", None) or str(run_dir / "locust-report.html")
        parsed.html_file = None  # ours to write (``write_html``), not Locust's
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

    def write_html(self) -> str | None:
        """Locust's HTML report, once the test is over; the reason, in words, if it could
        not be written (a partial file is removed: it would only take room)."""
        path = Path(_fill_in(self._html, self._parsed))
        try:
            text = get_html_report(self.environment, show_download_link=False)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            _remove(path)
            return f"Locust's HTML report {path} was not written: {exc.strerror or exc}"
        return None


def _fill_in(html_file: str, parsed) -> str:
    """Locust's {u}, {r} and {t} in a report's name, filled in as Locust would."""
    names = SimpleNamespace(html_file=html_file, num_users=getattr(parsed, "num_users", None),
                            spawn_rate=getattr(parsed, "spawn_rate", None),
                            run_time=getattr(parsed, "run_time", None))
    process_html_filename(names)
    return names.html_file


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # not there, or not ours to remove: either way nothing to give back
