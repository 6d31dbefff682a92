"""A small process that outlives the harness by a moment, to end what the harness started.

The kernel's parent-death signal reaches only the harness's direct children: an app that
ignores SIGTERM, or a wrapper that does not ``exec`` (``sh -c 'app & wait'``), left its
processes running after a ``kill -9`` of the harness. Every child the harness starts is
the leader of a process group of its own (its session); the harness tells this watchdog
each group it starts (``+PGID``) and each it has stopped itself (``-PGID``) over a pipe.
When the pipe closes — the harness exited, however it ended — the watchdog sends SIGKILL
to every group still registered, and exits.

The pipe's write end is not inherited by the children (Python's descriptors are not), so
only the harness's death closes it.
"""

from __future__ import annotations

import os
import signal
import sys


def watch(lines) -> set[int]:
    """The groups still registered when ``lines`` ends (pure: the protocol, no signals)."""
    groups: set[int] = set()
    for line in lines:
        line = line.strip()
        if len(line) > 1 and line[0] in "+-" and line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    return groups


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the harness's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for pgid in watch(sys.stdin):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
