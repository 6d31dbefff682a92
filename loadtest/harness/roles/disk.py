"""Room on the run directory's disk, watched while a run records (the controller's part).

What a run writes, by priority: run.json's last word (a reserve kept from the start, see
``rundir``), then the records, then the rest. The balancer's per-request log (Traefik's
access log, HAProxy's log) grows fastest, ~170 bytes a request against ~35 for a record,
and it is the one thing the harness can give back: ``DiskGuard`` cuts it (empties it; the
balancer appends from the start again) when it outgrows a quarter of the room that was
free when the run started, or when less than ``LOW_WATER`` is left. A cut costs the
names of the servers the log held (``loadtest.harness.names`` joins what is left), and run.json
says so, once, as a warning, with the count of cuts in its ``disk`` section.

When a record part or run.json cannot be written for lack of room, the disk is full: the
run fails at once and says so, rather than run on while its records are lost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import gevent

from loadtest.contract.rundir import DISK_FULL

log = logging.getLogger("scalecheck")
LOW_WATER = 1 << 20  # below this much free room, the balancer's log is cut whatever its size
INTERVAL = 0.5       # seconds between two looks at the disk


def free_bytes(path: Path) -> int | None:
    """Room left for an ordinary user's files on the filesystem of ``path``."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def size_text(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class DiskGuard:
    """Polls the disk every ``INTERVAL`` in a greenlet. ``logs``: the balancer's logs it may
    cut (asked anew each time: a balancer restarted by a fault keeps its paths);
    ``writers``: what writes the run (each with a ``last_error``); ``on_full``: called once,
    with the reason, when the disk is full; ``on_warning``: the first cut, said."""

    def __init__(self, run_dir: Path, logs: Callable[[], list[Path]], writers: Sequence,
                 on_full: Callable[[str], None], on_warning: Callable[[str], None]) -> None:
        self.run_dir = Path(run_dir)
        self.logs = logs
        self.writers = list(writers)
        self.on_full = on_full
        self.on_warning = on_warning
        self.free_at_start = free_bytes(self.run_dir)
        self.budget = None if self.free_at_start is None else self.free_at_start // 4
        self.cuts = 0
        self.bytes_cut = 0
        self.full: str | None = None
        self._greenlet = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None

    def _loop(self) -> None:
        while True:
            gevent.sleep(INTERVAL)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a look at the disk must never end the run
                log.exception("scalecheck: looking at the disk failed")

    def check(self) -> None:
        """One look: cut the balancer's logs if they must give room back; say when the
        disk is full."""
        free = free_bytes(self.run_dir)
        for path in self.logs():
            size = _size(path)
            if size and self._must_cut(size, free):
                self._cut(path, size, free)
        error = self.full_error()
        if error is not None and self.full is None:
            self.full = f"the disk of the run directory filled up ({_words(error)}: " \
                        f"{self.run_dir})"
            self.on_full(self.full)

    def _must_cut(self, size: int, free: int | None) -> bool:
        return (self.budget is not None and size > self.budget) or \
            (free is not None and free < LOW_WATER)

    def _cut(self, path: Path, size: int, free: int | None) -> None:
        try:
            os.truncate(path, 0)  # the balancer appends (O_APPEND): it goes on from 0
        except OSError as exc:
            log.error("scalecheck: cannot cut %s: %s", path, exc.strerror or exc)
            return
        self.cuts += 1
        self.bytes_cut += size
        if self.cuts == 1:
            why = f"less than {size_text(LOW_WATER)} left" if free is not None and \
                free < LOW_WATER else "more than its share"
            self.on_warning(
                f"the balancer's log {path.name} was cut at {size_text(size)} ({why}), and is "
                f"cut whenever it outgrows {size_text(self.budget)} (a quarter of the "
                f"{size_text(self.free_at_start)} free on the run directory's disk when the "
                f"run started) or less than {size_text(LOW_WATER)} is left, to keep the room "
                "for the records; it names servers only for the requests since its last cut")

    def full_error(self) -> OSError | None:
        """A write of the run that failed for lack of room, if any."""
        for writer in self.writers:
            error = getattr(writer, "last_error", None)
            if error is not None and error.errno in DISK_FULL:
                return error
        return None

    def to_dict(self) -> dict:
        """For run.json's ``disk`` section."""
        return {"free_at_start": self.free_at_start, "balancer_log_budget": self.budget,
                "balancer_log_cuts": self.cuts, "balancer_log_bytes_cut": self.bytes_cut,
                "full": self.full}


def _words(error: OSError) -> str:
    """The system's words for an error (pyarrow wraps them in its own)."""
    return os.strerror(error.errno) if error.errno else str(error)


def _size(path: Path) -> int:
    """The room a log takes: its blocks, not its length (HAProxy writes its log without
    O_APPEND, so after a cut it goes on at its old offset, leaving a hole that takes none)."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0
