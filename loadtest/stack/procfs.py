"""One reader of ``/proc/<pid>/stat``, for the stack (who owns a run's cgroups) and the
harness's CPU sampler (what each part used).

The command name (field 2) may hold spaces and parentheses, so the fields are counted
from the last ``)``. Field numbers below are those of proc(5) minus three.
"""

from __future__ import annotations

from typing import NamedTuple


class ProcStat(NamedTuple):
    """The few fields of ``/proc/<pid>/stat`` the harness reads."""

    state: bytes        # R, S, D, Z (zombie), X (dead)…
    ppid: int
    cpu_ticks: int      # utime + stime, all threads, in clock ticks
    start_ticks: int    # when it started, clock ticks since boot

    @property
    def alive(self) -> bool:
        """Not a zombie nor dead: it can still use CPU, and its pid is still its own."""
        return self.state not in (b"Z", b"X")


def proc_stat(pid: int | str) -> ProcStat | None:
    """``pid``'s stat fields, or None if it is gone (or the line cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return ProcStat(fields[0], int(fields[1]), int(fields[11]) + int(fields[12]),
                        int(fields[19]))
    except (OSError, IndexError, ValueError):
        return None
