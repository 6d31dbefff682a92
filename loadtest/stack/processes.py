"""Child processes that never outlive the harness.

Children run in their own session, so a Ctrl-C in the terminal reaches only
the harness, which then stops them in order (flush records, read the counter,
stop the stack). If the harness itself dies, even by SIGKILL, the kernel's
parent-death signal ends them (Linux ``PR_SET_PDEATHSIG``), and the watchdog
(``loadtest.stack.watchdog``) ends their whole process groups: what a wrapper
started, and what ignores SIGTERM.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


class Watchdog:
    """The harness's side of the watchdog: started at the first child, told each group."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def guard(self, pgid: int) -> None:
        self._say(f"+{pgid}")

    def release(self, pgid: int) -> None:
        if self._proc is not None:
            self._say(f"-{pgid}")

    def guard_dir(self, path: Path) -> None:
        """Remove ``path`` (a private directory of the harness's) if the harness dies."""
        self._say(f"+{Path(path).resolve()}")

    def release_dir(self, path: Path) -> None:
        if self._proc is not None:
            self._say(f"-{Path(path).resolve()}")

    def _say(self, line: str) -> None:
        with self._lock:
            try:
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-m", "loadtest.stack.watchdog"],
                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, start_new_session=True, cwd=str(REPO_ROOT),
                        env={**os.environ, "PYTHONPATH": pythonpath_with_repo(dict(os.environ))})
                self._proc.stdin.write(f"{line}\n".encode())
                self._proc.stdin.flush()
            except OSError:
                pass  # the parent-death signal still covers the direct children


WATCHDOG = Watchdog()


@functools.cache
def _installed_editable_here() -> bool:
    """The venv has this checkout installed editable (make setup: ``pip install -e .``).

    Every record is read: run from the repo root, the build's own ``scalecheck.egg-info``
    there is found first, and it says nothing of the install."""
    for dist in importlib.metadata.distributions(name="scalecheck"):
        try:
            where = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            continue
        if not isinstance(where, dict) or not isinstance(where.get("dir_info"), dict):
            continue
        url = str(where.get("url", ""))
        if where["dir_info"].get("editable") and url.startswith("file://") and \
                Path(urllib.parse.unquote(url[len("file://"):])).resolve() == REPO_ROOT:
            return True
    return False


def pythonpath_with_repo(env: dict[str, str]) -> str:
    """PYTHONPATH for the harness's own children (``python -m loadtest...``, the hello app's
    ``-m scalecheck_hello.serve``) from any directory.

    Installed editable from here, a child imports both from the install, and the repo root
    stays off the path: first on it, its ``app/`` folder would shadow a user's own ``app``
    in every process that inherits the variable (the replicas of ``stack up -d``). Otherwise
    (a bare checkout, another install) the repo root goes first, as before.
    """
    root = None if _installed_editable_here() else str(REPO_ROOT)
    return os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """This process ends when its parent does (a forked Locust worker: its master)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def _child_setup(tied_to_parent: bool,
                 preexec: Callable[[], None] | None) -> Callable[[], None] | None:
    if preexec is None:
        return _die_with_parent if tied_to_parent else None

    def setup() -> None:
        if tied_to_parent:
            _die_with_parent()
        preexec()
    return setup


def spawn(
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    tied_to_parent: bool = True,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """Start ``argv`` in its own session, output to ``log_path``.

    ``preexec`` runs in the child between fork and exec, after the parent-death
    signal is set (e.g. joining a cgroup, so that every process the child starts
    is born inside it).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(tied_to_parent, preexec),
        )
    finally:
        log.close()
    if tied_to_parent:
        WATCHDOG.guard(proc.pid)  # its session's id is its pid: its process group
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
    """Signal, wait, and SIGKILL what is still there after ``timeout``."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            return proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    # Reap our direct child, and anything left in its session (gunicorn workers).
    _kill_group(proc.pid)
    WATCHDOG.release(proc.pid)
    return proc.poll()


def stop_all(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Signal every process first, then wait for each: they stop side by side."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        stop(proc, timeout=timeout)


def signal_group(popen: subprocess.Popen, sig: int) -> None:
    """Signal a child's whole process group (its workers too), if it is still there."""
    _signal_pid_group(popen.pid, sig)


def _kill_group(pid: int) -> None:
    _signal_pid_group(pid, signal.SIGKILL)


def _signal_pid_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
