"""One cluster per machine, and the record that lets the next one clean up.

kube-proxy's and the kubelet's iptables chains, the bridge and the ``kubepods``
cgroups have machine-wide names, so two throwaway clusters cannot share a
machine: a lock says which process owns the one there is. While a cluster
runs, ``RUN_DIR/active.json`` names its workdir; if its owner is killed
(SIGKILL leaves no chance to clean), the next owner finds the record and
sweeps what is left before starting.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtest.stack.kubernetes import network, sweep
from loadtest.stack.kubernetes.layout import HOST_DIRS, RUN_DIR, Layout

LOCK_PATH = Path("/run/scalecheck-kube.lock")
RECORD = RUN_DIR / "active.json"


class MachineBusy(RuntimeError):
    """Another process on this machine owns a running throwaway cluster."""


class MachineLock:
    """An exclusive flock on LOCK_PATH, removed when released.

    The file is unlinked while still locked, so after taking the lock the path
    is checked to be the very file locked (else another owner has come and
    gone, and we try again)."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> None:
        """Take the lock, waiting up to ``timeout`` seconds for another owner to stop."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._try_acquire()
                return
            except MachineBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    def _try_acquire(self) -> None:
        for _ in range(10):
            fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                raise MachineBusy(f"another throwaway cluster runs on this machine "
                                  f"(owner pid {owner or '?'}, lock {LOCK_PATH})") from None
            try:
                same = os.stat(LOCK_PATH).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                self._fd = fd
                return
            os.close(fd)
        raise MachineBusy(f"could not take {LOCK_PATH}")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            LOCK_PATH.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class Baseline:
    """What the host had before the cluster, to put back after it."""

    absent_dirs: list[str]
    nft_tables: list[str]
    sysctls: dict[str, str]

    @classmethod
    def now(cls) -> Baseline:
        return cls(absent_dirs=[str(d) for d in HOST_DIRS if not d.exists()],
                   nft_tables=network.all_nft_tables(), sysctls=network.read_sysctls())

    def restore(self) -> None:
        """Remove the host directories and empty nftables tables the cluster
        brought, and put back the sysctls it changed."""
        for directory in map(Path, self.absent_dirs):
            if directory.exists() and not sweep.mounts_under([directory]):
                shutil.rmtree(directory, ignore_errors=True)
        network.remove_new_empty_tables(self.nft_tables)
        network.restore_sysctls(self.sysctls)


def write_record(layout: Layout, baseline: Baseline) -> None:
    """Say which workdir is running and what to put back, for a killed run's successor."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps({"workdir": str(layout.workdir), "pid": os.getpid(),
                                  "baseline": asdict(baseline)}))


def clear_leftovers_of_killed_run(layout: Layout) -> None:
    """Sweep what a previous owner left (its workdir and baseline from the record).

    Called with the lock held, so nothing found belongs to a live cluster."""
    roots = layout.owned_roots()
    pod_logs = layout.pod_logs
    previous, baseline = None, None
    try:
        record = json.loads(RECORD.read_text())
        previous = Layout(Path(record["workdir"]))
        baseline = Baseline(**record["baseline"])
        roots = [*previous.owned_roots(), *roots]
        pod_logs = previous.pod_logs
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sockets = [*sweep.shim_sockets(layout.containerd_state, layout.containerd_socket)]
    if previous is not None:
        sockets += sweep.shim_sockets(previous.containerd_state, previous.containerd_socket)
    sweep.sweep(roots, pod_logs, sockets)
    if baseline is not None:
        baseline.restore()
    if previous is not None and previous.workdir != layout.workdir:
        remove_tree(previous, keep_logs=True)
    if not sweep.mounts_under([RUN_DIR]):  # the kubelet's root may be there
        shutil.rmtree(RUN_DIR, ignore_errors=True)


def remove_tree(layout: Layout, keep_logs: bool) -> None:
    """Remove what the cluster wrote under its workdir (all mounts must be gone),
    keeping logs/ if asked. Other files in the workdir are not the cluster's."""
    if sweep.mounts_under([layout.workdir, layout.kubelet_root]):
        return  # never delete through a mount point
    for path in [*layout.owned_paths(), *([] if keep_logs else [layout.logs])]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
