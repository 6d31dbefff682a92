"""Remove what a cluster leaves on the host, whether it stopped well or was killed.

Each function finds the cluster's things by where they are (under its
directories), by their names (its interfaces and chains) or by their cgroups
(the kubelet's ``kubepods`` trees and the cluster's tracking cgroup), never by
a broad process name, so Docker's containerd and anything else on the machine
are left alone. Used by ``Cluster.stop()`` and, before a start, to clear what a
killed run left.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from loadtest.stack.kubernetes import network
from loadtest.stack.kubernetes.layout import CNI_NETWORK, TRACKING_CGROUP

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAMES = ("kubepods", TRACKING_CGROUP)
_MNT_DETACH = 2


def cgroup_dirs() -> list[Path]:
    """The cluster's cgroup directories in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        for name in CGROUP_NAMES:
            top = hierarchy / name
            if top.is_dir():
                found.extend(Path(p) for p, _, _ in os.walk(top))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for directory in cgroup_dirs():
        try:
            pids.update(int(x) for x in (directory / "cgroup.procs").read_text().split())
        except OSError:
            continue
    return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def _protected() -> set[int]:
    """This process and its ancestors: never ours to kill."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def cluster_pids(roots: list[Path]) -> set[int]:
    """Processes of the cluster: in its cgroups, or naming one of its directories."""
    marks = [str(root).rstrip("/") + "/" for root in roots]  # /tmp/a/ never matches /tmp/ab
    pids = cgroup_pids()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = _cmdline(int(entry.name))
            if any(mark in cmd for mark in marks):
                pids.add(int(entry.name))
    return pids - _protected()


def kill_processes(roots: list[Path], timeout: float = 15.0) -> set[int]:
    """SIGKILL the cluster's processes until none is left (bounded); return survivors."""
    deadline = time.monotonic() + timeout
    while (pids := cluster_pids(roots)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.1)
    return cluster_pids(roots)


def mounts_under(roots: list[Path]) -> list[str]:
    """Mount points under the cluster's directories, deepest first."""
    prefixes = [str(root).rstrip("/") + "/" for root in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point.startswith(p) or point + "/" == p for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all(roots: list[Path], rounds: int = 5) -> list[str]:
    """Lazily unmount everything under ``roots`` (volumes, rootfs, shm, netns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(rounds):
        points = mounts_under(roots)
        if not points:
            break
        for point in points:
            libc.umount2(point.encode(), _MNT_DETACH)
    return mounts_under(roots)


def remove_cgroups(timeout: float = 10.0) -> list[Path]:
    """rmdir the cluster's cgroups, leaves first (a cgroup goes once it is empty)."""
    deadline = time.monotonic() + timeout
    while (dirs := cgroup_dirs()) and time.monotonic() < deadline:
        for directory in dirs:
            try:
                directory.rmdir()
            except OSError:
                pass
        time.sleep(0.05)
    return cgroup_dirs()


SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6 puts every shim's socket here


def shim_sockets(containerd_state: Path, containerd_socket: Path) -> list[Path]:
    """The sockets of this containerd's shims (live or stale) in /run/containerd/s.

    A shim names its socket sha256("<containerd address>/<namespace>/<task id>")
    under a fixed directory, whatever containerd's state dir, and removes it
    when it exits cleanly; a SIGKILLed shim leaves it. Task ids are read from
    the state dir, so call this before the state dir is removed."""
    tasks = containerd_state / "io.containerd.runtime.v2.task"
    found = []
    for task in tasks.glob("*/*") if tasks.is_dir() else []:
        key = f"{containerd_socket}/{task.parent.name}/{task.name}"
        path = SHIM_SOCKETS / hashlib.sha256(key.encode()).hexdigest()
        if path.exists():
            found.append(path)
    return found


def stale_shim_sockets() -> set[Path]:
    """Shim sockets nobody listens on any more (any containerd's)."""
    if not SHIM_SOCKETS.is_dir():
        return set()
    try:
        listening = {line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()
                     if line.split()[-1].startswith(str(SHIM_SOCKETS))}
    except OSError:
        return set()
    return {p for p in SHIM_SOCKETS.iterdir() if str(p) not in listening}


CNI_RESULTS = Path("/var/lib/cni/results")
CONTAINER_LOGS = Path("/var/log/containers")


def stray_files(pod_logs: Path | None) -> list[Path]:
    """Files the CNI library and the kubelet write outside the workdir.

    libcni caches each attachment's result in /var/lib/cni/results (named after
    the network); the kubelet links each container's log from /var/log/containers."""
    found = sorted(CNI_RESULTS.glob(f"{CNI_NETWORK}-*")) if CNI_RESULTS.is_dir() else []
    if CONTAINER_LOGS.is_dir():
        for link in CONTAINER_LOGS.iterdir():
            if link.is_symlink():
                target = os.readlink(link)
                if pod_logs is not None and target.startswith(str(pod_logs)):
                    found.append(link)
    return found


def remove_stray_files(pod_logs: Path | None) -> None:
    for path in stray_files(pod_logs):
        path.unlink(missing_ok=True)


def sweep(roots: list[Path], pod_logs: Path | None, sockets: Sequence[Path] = ()) -> None:
    """Everything, in the order that lets each step succeed.

    Processes first (a live shim holds mounts and netns), then mounts (a
    mounted netns holds its veth), then interfaces, chains, cgroups and files
    (``sockets``: this cluster's shim sockets, from shim_sockets())."""
    kill_processes(roots)
    for socket in sockets:
        socket.unlink(missing_ok=True)
    unmount_all(roots)
    network.remove_links()
    for family in ("4", "6"):
        network.remove_chains(family)
    network.remove_nft_tables()
    remove_cgroups()
    remove_stray_files(pod_logs)
