"""The cluster's processes: started as children that die with their owner.

Each component is a child in its own session (a Ctrl-C in the terminal reaches
only the harness, which stops the cluster in order), logs to
``workdir/logs/<name>.log``, gets SIGKILL from the kernel if the owning
process dies, even by SIGKILL (``PR_SET_PDEATHSIG``), and joins the cluster's
tracking cgroup, so that what it starts and orphans (containerd's shims) can
still be found and ended by the next ``start()`` or ``stop()``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from loadtest.stack.kubernetes.components import Component
from loadtest.stack.kubernetes.layout import TRACKING_CGROUP
from loadtest.stack.processes import spawn

TRACKING_DIR = Path("/sys/fs/cgroup/pids") / TRACKING_CGROUP
_PR_SET_PDEATHSIG = 1
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
# Where containerd sends any image pull: a closed port on this machine. No
# registry is reachable here, and a pull must never try one outside (the
# kubelet asks for one whenever a pod's imagePullPolicy is Always, as it is by
# default for a :latest tag); Go's HTTP client honours these variables.
NO_REGISTRY = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "NO_PROXY": ""}


def clean_environment() -> dict[str, str]:
    """The owner's environment without proxy settings (a component would send
    its apiserver traffic through them), with a PATH that has the sbin tools."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env["PATH"] = PATH
    return env


def make_tracking_cgroup() -> None:
    """The cgroup components join (v1 pids hierarchy; skipped where there is none)."""
    if TRACKING_DIR.parent.is_dir():
        TRACKING_DIR.mkdir(exist_ok=True)


class ComponentDied(RuntimeError):
    """A component exited while the cluster needed it (one line: name, code, log)."""


def _child_setup() -> None:  # runs in the child between fork and exec
    """SIGKILL (not spawn's SIGTERM) when the owner dies: an apiserver whose etcd
    died with it would wait forever in its graceful shutdown. Then join the
    tracking cgroup."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        (TRACKING_DIR / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        pass


def last_log_line(log: Path, limit: int = 200) -> str:
    """The last meaningful line of a log, to put in a one-line error."""
    try:
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    for line in reversed(lines):
        if line and ("E" == line[:1] or "error" in line.lower() or "fatal" in line.lower()):
            return line[:limit]
    return next((line[:limit] for line in reversed(lines) if line), "")


class Supervisor:
    """The running components, by name, in start order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, component: Component, env: dict[str, str] | None = None) -> None:
        full_env = {**clean_environment(), **(env or {})}
        self.procs[component.name] = spawn(component.argv, self.log(component.name),
                                           env=full_env, preexec=_child_setup)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check(self) -> None:
        """Raise ComponentDied naming the first component that has exited."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                detail = last_log_line(self.log(name))
                raise ComponentDied(f"{name} exited with code {code} (log {self.log(name)})"
                                    + (f": {detail}" if detail else ""))

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def stop(self, names: list[str], timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Signal ``names`` together, wait for each, SIGKILL what outlives ``timeout``."""
        procs = [self.procs[n] for n in names if n in self.procs]
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def kill_all(self) -> None:
        self.stop(list(self.procs), timeout=5.0, sig=signal.SIGKILL)


def wait_for(condition: Callable[[], object], timeout: float, what: str,
              supervisor: Supervisor, interval: float = 0.25) -> object:
    """Poll ``condition`` until truthy; fail early if a component dies.

    Raises TimeoutError("<what> not reached after N s") when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        supervisor.check()
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - not ready yet; judged again until the deadline
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached after {timeout:.0f} s")
        time.sleep(interval)
