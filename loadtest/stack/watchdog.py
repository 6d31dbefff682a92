"""A small process that outlives the harness by a moment, to end what the harness started.

The kernel's parent-death signal reaches only the harness's direct children: an app that
ignores SIGTERM, or a wrapper that does not ``exec`` (``sh -c 'app & wait'``), left its
processes running after a ``kill -9`` of the harness. Every child the harness starts is
the leader of a process group of its own (its session); the harness tells this watchdog
each group it starts (``+PGID``) and each it has stopped itself (``-PGID``) over a pipe.
When the pipe closes — the harness exited, however it ended — the watchdog sends SIGKILL
to every group still registered, and exits. The private directories the harness made for
its parts' secrets and sockets (``+/PATH``, ``-/PATH``) are removed then too: a SIGKILL
runs none of the harness's own cleanup.

The pipe's write end is not inherited by the children (Python's descriptors are not), so
only the harness's death closes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

#: Only directories the harness names this way are ever removed.
OURS = "scalecheck-"


def registered(lines) -> tuple[set[int], set[str]]:
    """The groups and the directories still registered when ``lines`` ends (pure: the
    protocol, no signals)."""
    groups: set[int] = set()
    dirs: set[str] = set()
    for line in lines:
        line = line.strip()
        if len(line) < 2 or line[0] not in "+-":
            continue
        if line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
        elif line[1] == "/" and Path(line[1:]).name.startswith(OURS):
            (dirs.add if line[0] == "+" else dirs.discard)(line[1:])
    return groups, dirs


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the harness's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups, dirs = registered(sys.stdin)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
