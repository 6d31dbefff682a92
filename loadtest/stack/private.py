"""Directories only this user may enter, for the control sockets of a run's parts.

An abstract Unix socket (``abns@…``, ``\\0name``) carries no permissions: any local user
could reach HAProxy's admin API through it and add servers, change weights or stop one.
A socket file inside a directory of mode 0700 can be reached by its owner (and root)
alone. Kept short (under /tmp) because a Unix socket's path is at most 107 bytes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from loadtest.stack.processes import WATCHDOG
from loadtest.stack.watchdog import OURS


def private_dir(part: str) -> Path:
    """A new directory of mode 0700, owned by this user, named ``scalecheck-PART-…``: the
    watchdog removes only names it knows as ours (``watchdog.OURS``)."""
    path = Path(tempfile.mkdtemp(prefix=f"{OURS}{part}-", dir=root()))
    os.chmod(path, 0o700)  # mkdtemp makes it so; said again, as the point of it
    WATCHDOG.guard_dir(path)  # gone even if the harness is killed (no cleanup runs then)
    return path


def remove(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        WATCHDOG.release_dir(path)


def root() -> str:
    """Where private directories are made: $TMPDIR if a socket path under it still fits,
    else /tmp."""
    base = tempfile.gettempdir()
    return base if len(base) < 60 else "/tmp"
