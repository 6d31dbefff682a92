"""CPU and memory limits per replica on the embedded stack, as Linux cgroups (v1 or v2).

A cluster gives each pod a CPU limit, a memory limit and a CPU request (the
HPA's utilisation is usage / request). ``Limits`` holds the three;
``ReplicaCgroups`` puts each replica of one run in a cgroup of its own with
those limits, as Docker's ``--cpus``/``--memory`` and the kubelet do, and
reads back what the kernel counted (CPU used, time throttled, memory, OOM kills).

Where the groups live: ``<hierarchy>/scalecheck/<run>.<pid>.<start>/<replica>``
in each hierarchy used (v1: ``cpu``, ``cpuacct``, ``memory``; v2: the one
unified tree), at the top of the tree as Docker's cgroupfs driver puts its own,
so that the cleaning of stale groups finds every run's. ``<pid>.<start>`` names
the harness process that owns the groups.

Cleaning up: ``release`` removes a replica's group once it exited, ``close``
removes everything and is also registered with ``atexit`` (a normal exit, an
exception, or SIGTERM/SIGINT turned into an exit by the harness). If the
harness is killed with SIGKILL, its replicas still end (the parent-death
signal of ``processes.spawn``), but their empty groups stay behind: the next
``preflight`` on the machine removes the groups of every run whose owner
process is gone (killing anything still inside them first).
"""

from __future__ import annotations

import atexit
import errno
import logging
import math
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadtest.stack.base import StackError
from loadtest.stack.procfs import proc_stat

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
TOP = "scalecheck"           # one directory per hierarchy holds every run's groups
CFS_PERIOD_US = 100_000      # the period Docker and the kubelet use
MIN_QUOTA_US = 1_000         # the kernel refuses a shorter quota (the kubelet clamps too)
MIN_MEMORY = 6 * 2**20       # Docker's smallest memory limit; a replica needs ~58 MB anyway
RELEASE_TIMEOUT = 5.0        # seconds to wait for a group to empty before giving up on it

# Files that tell which v1 hierarchy holds a controller.
_V1_MARKERS = {"cpu": "cpu.cfs_quota_us", "cpuacct": "cpuacct.usage",
               "memory": "memory.limit_in_bytes"}


# -- what a user asks for ------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """One replica's share of the machine, as a pod's resources say it."""

    cpus: float | None = None          # CPU limit in cores (Compose's cpus, k8s limits.cpu)
    memory_bytes: int | None = None    # memory limit (Compose's mem_limit, k8s limits.memory)
    cpu_request: float | None = None   # the HPA's CPU request in cores; default: cpus

    def __post_init__(self) -> None:
        for name in ("cpus", "cpu_request"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of cores, not {value!r}")
        if self.memory_bytes is not None and self.memory_bytes < MIN_MEMORY:
            raise ValueError(f"memory limit {self.memory_bytes} bytes is below the "
                             f"minimum of {MIN_MEMORY // 2**20} MiB")

    @property
    def request(self) -> float | None:
        """The CPU request the HPA divides usage by: as given, else the limit (as k8s does)."""
        return self.cpu_request if self.cpu_request is not None else self.cpus

    @property
    def limited(self) -> bool:
        return self.cpus is not None or self.memory_bytes is not None

    def to_dict(self) -> dict:
        """The run.json form (the sampler's ``limits`` section)."""
        return {"cpus": self.cpus, "request": self.request, "memory_bytes": self.memory_bytes}


_CPUS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(m?)")


def parse_cpus(text: str | float) -> float:
    """Cores as Compose (``0.25``) or Kubernetes (``250m``) write them."""
    match = _CPUS.fullmatch(str(text).strip())
    value = float(match[1]) / (1000 if match[2] else 1) if match else math.nan
    if not value >= 0.001:
        raise ValueError(f"CPU amount {text!r}: give cores (0.25) or millicores (250m), "
                         "at least 1m")
    return value


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "ki": 2**10, "kib": 2**10,
          "m": 2**20, "mb": 2**20, "mi": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gi": 2**30, "gib": 2**30,
          "t": 2**40, "tb": 2**40, "ti": 2**40, "tib": 2**40}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_memory(text: str | int) -> int:
    """Bytes from ``256M``, ``1G``, ``512Mi``, ``268435456``.

    Units are binary, as Docker and Compose read them (``256M`` is 256 MiB);
    Kubernetes' ``Mi``/``Gi`` mean the same. (Kubernetes reads a bare ``M`` as
    10^6: write ``Mi`` to be exact in both.)
    """
    match = _MEMORY.fullmatch(str(text))
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if unit is None:
        raise ValueError(f"memory amount {text!r}: give bytes or a number with a unit "
                         "(256M, 1G, 512Mi)")
    value = int(float(match.group(1)) * unit)
    if value < MIN_MEMORY:
        raise ValueError(f"memory amount {text!r} is below the minimum of "
                         f"{MIN_MEMORY // 2**20} MiB")
    return value


# -- what the kernel counted -------------------------------------------------------------------

@dataclass(frozen=True)
class CgroupSample:
    """Cumulative counters of one group since it was made (None: not counted there)."""

    cpu_seconds: float | None
    throttled_seconds: float | None
    nr_throttled: int | None
    memory_bytes: int | None
    oom_kills: int | None


def keyed(text: str | None) -> dict[str, int]:
    """A flat-keyed cgroup file (``cpu.stat``, ``memory.events``, ``memory.oom_control``)."""
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _number(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def sample_from(version: int, files: dict[str, str | None]) -> CgroupSample:
    """A sample from the texts of a group's files (None: the file is not there)."""
    if version == 1:
        usage = _number(files.get("cpuacct.usage"))                 # nanoseconds
        stat = keyed(files.get("cpu.stat")) if files.get("cpu.stat") is not None else None
        oom = keyed(files.get("memory.oom_control")) \
            if files.get("memory.oom_control") is not None else None
        return CgroupSample(
            cpu_seconds=usage / 1e9 if usage is not None else None,
            throttled_seconds=stat["throttled_time"] / 1e9
            if stat and "throttled_time" in stat else None,
            nr_throttled=stat.get("nr_throttled") if stat else None,
            memory_bytes=_number(files.get("memory.usage_in_bytes")),
            oom_kills=oom.get("oom_kill") if oom is not None else None)
    stat = keyed(files.get("cpu.stat"))
    events = files.get("memory.events")
    return CgroupSample(
        cpu_seconds=stat["usage_usec"] / 1e6 if "usage_usec" in stat else None,
        throttled_seconds=stat["throttled_usec"] / 1e6 if "throttled_usec" in stat else None,
        nr_throttled=stat.get("nr_throttled"),
        memory_bytes=_number(files.get("memory.current")),
        oom_kills=keyed(events).get("oom_kill", 0) if events is not None else None)


def quota_us(cpus: float) -> int:
    """The CFS quota for ``cpus`` cores per ``CFS_PERIOD_US``, as ``docker --cpus`` sets it."""
    return max(MIN_QUOTA_US, round(cpus * CFS_PERIOD_US))


def limit_writes(version: int, limits: Limits) -> list[tuple[str, str, str]]:
    """(controller, file, value) to write, in order, to put ``limits`` on a new group.

    Swap is capped at the memory limit (v1's memsw = memory, v2's swap.max = 0),
    as a pod has no swap: a replica over its limit is OOM-killed, not slowed down.
    On v2 the OOM killer takes the whole group at once (``memory.oom.group``, as the
    kubelet sets it); v1 has no such switch and kills one process (the largest,
    usually a gunicorn worker, which gunicorn would replace): the stack should treat
    ``oom_killed`` as the replica's death on both. Files that a kernel may lack are
    written only where they exist.
    """
    writes = []
    if version == 1:
        if limits.cpus is not None:
            writes += [("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)),
                       ("cpu", "cpu.cfs_quota_us", str(quota_us(limits.cpus)))]
        if limits.memory_bytes is not None:
            writes += [("memory", "memory.limit_in_bytes", str(limits.memory_bytes)),
                       ("memory", "memory.memsw.limit_in_bytes?", str(limits.memory_bytes))]
    else:
        if limits.cpus is not None:
            writes.append(("cpu", "cpu.max", f"{quota_us(limits.cpus)} {CFS_PERIOD_US}"))
        if limits.memory_bytes is not None:
            writes += [("memory", "memory.max", str(limits.memory_bytes)),
                       ("memory", "memory.swap.max?", "0"),
                       ("memory", "memory.oom.group?", "1")]
    return writes


def _sample_files(version: int) -> dict[str, str]:
    """File -> controller it is read from, for ``sample``."""
    if version == 1:
        return {"cpuacct.usage": "cpuacct", "cpu.stat": "cpu",
                "memory.usage_in_bytes": "memory", "memory.oom_control": "memory"}
    return {"cpu.stat": "cpuacct", "memory.current": "memory", "memory.events": "memory"}


# -- where the hierarchies are -------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """The cgroup version and the directory that holds each controller (None: absent)."""

    version: int
    root: Path
    dirs: dict[str, Path]   # "cpu", "cpuacct" (CPU usage), "memory"

    def hierarchies(self) -> list[Path]:
        return sorted(set(self.dirs.values()))


def discover(root: Path = CGROUP_ROOT) -> Layout | None:
    """The cgroup hierarchies under ``root``: v2 (unified), else v1, else None.

    On a hybrid machine (v1 controllers, an empty v2 tree at ``unified``) the
    v1 controllers are used; v2 is used where it holds cpu or memory.
    """
    if (root / "cgroup.controllers").is_file():
        return _v2_layout(root)
    dirs: dict[str, Path] = {}
    try:
        candidates = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return None
    for path in candidates:
        for controller, marker in _V1_MARKERS.items():
            if controller not in dirs and (path / marker).is_file():
                dirs[controller] = path
    if "cpu" in dirs or "memory" in dirs:
        return Layout(1, root, dirs)
    unified = root / "unified"
    if (unified / "cgroup.controllers").is_file():
        layout = _v2_layout(unified)
        if "cpu" in layout.dirs or "memory" in layout.dirs:
            return layout
    return Layout(1, root, dirs) if dirs else None


def _v2_layout(root: Path) -> Layout:
    try:
        available = set((root / "cgroup.controllers").read_text().split())
    except OSError:
        available = set()
    # CPU usage (cpu.stat usage_usec) is counted in every v2 group, controller or not.
    dirs = {"cpuacct": root}
    dirs.update({c: root for c in ("cpu", "memory") if c in available})
    return Layout(2, root, dirs)


# -- the harness process that owns a run's groups ---------------------------------------------

def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie."""
    stat = proc_stat(pid)
    return stat.start_ticks if stat is not None and stat.alive else None


_OWNED = re.compile(r"(?P<run>.*)\.(?P<pid>\d+)\.(?P<start>\d+)")


def _owner_alive(group_name: str) -> bool | None:
    """Whether the harness that made this run group still runs (None: not a name of ours)."""
    match = _OWNED.fullmatch(group_name)
    if match is None:
        return None
    return _start_ticks(int(match["pid"])) == int(match["start"])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:64] or "run"


# -- the groups of one run ---------------------------------------------------------------------

class ReplicaCgroups:
    """One cgroup per replica under a parent group of this run; v1 or v2."""

    def __init__(self, run_name: str, limits: Limits, root: Path | str = CGROUP_ROOT) -> None:
        self.limits = limits
        self.root = Path(root)
        pid = os.getpid()
        self.parent_name = f"{_safe(run_name)}.{pid}.{_start_ticks(pid) or 0}"
        self.layout: Layout | None = None
        self._groups: dict[str, dict[str, Path]] = {}   # replica -> controller -> directory
        self._oom_at_release: dict[str, int] = {}
        self._registered = False

    @property
    def version(self) -> int | None:
        return self.layout.version if self.layout else None

    def _needed(self) -> set[str]:
        needed = {c for c, asked in (("cpu", self.limits.cpus), ("memory",
                  self.limits.memory_bytes)) if asked is not None}
        return needed or {"cpuacct"}  # no limits: the groups are there to count CPU

    def preflight(self) -> None:
        """Check the controllers, clean stale groups of dead runs, make this run's parent.

        Raises StackError with one line when the limits cannot be applied.
        """
        layout = discover(self.root)
        if layout is None:
            raise StackError(f"no cgroup hierarchy at {self.root}: per-replica CPU and memory "
                             "limits need Linux cgroups (v1 or v2)")
        missing = sorted(self._needed() - set(layout.dirs))
        if missing:
            raise StackError(f"the cgroup controller(s) {', '.join(missing)} are not available "
                             f"at {self.root} (cgroup v{layout.version}); per-replica limits "
                             "need them")
        self.layout = layout
        for cleaned in clean_stale(layout):
            log.info("removed the cgroup %s left by a run that is gone", cleaned)
        for hierarchy in layout.hierarchies():
            self._make(hierarchy / TOP / self.parent_name)
        if layout.version == 2:
            self._enable_v2_controllers()
        if not self._registered:
            atexit.register(self.close)
            self._registered = True

    def _make(self, path: Path) -> None:
        for attempt in range(3):
            try:
                path.mkdir(parents=True, exist_ok=True)
                return
            except FileNotFoundError:
                if attempt == 2:  # another run's close() removed the top in between
                    raise StackError(f"cannot create cgroup {path}: it keeps vanishing") \
                        from None
            except OSError as exc:
                raise StackError(_why(f"cannot create cgroup {path}", exc)) from None

    def _enable_v2_controllers(self) -> None:
        """v2 distributes a controller to a group only if every ancestor enables it for its
        children (``cgroup.subtree_control``); our parents hold no process, so they may."""
        wanted = sorted({"cpu", "memory"} & set(self.layout.dirs))
        if not wanted:
            return
        root = self.layout.root
        for group in (root, root / TOP, root / TOP / self.parent_name):
            control = group / "cgroup.subtree_control"
            try:
                enabled = set(control.read_text().split())
                todo = [c for c in wanted if c not in enabled]
                if todo:
                    control.write_text(" ".join(f"+{c}" for c in todo))
            except OSError as exc:
                raise StackError(_why(f"cannot enable {', '.join(wanted)} in {control}", exc)) \
                    from None

    def prepare(self, name: str) -> Callable[[], None]:
        """Make replica ``name``'s group with the limits; return what the child runs between
        fork and exec to join it (``processes.spawn(..., preexec=...)``).

        Joining before exec means gunicorn's master and every worker it forks are
        born inside the group: nothing runs unlimited for a moment, nothing is missed.
        Called again for the same name (a replica started anew), it reuses the group.
        """
        if self.layout is None:
            self.preflight()
        group: dict[str, Path] = {}
        for controller, hierarchy in self.layout.dirs.items():
            group[controller] = hierarchy / TOP / self.parent_name / _safe(name)
        for path in set(group.values()):
            self._make(path)
        self._groups[name] = group
        for controller, filename, value in limit_writes(self.layout.version, self.limits):
            optional = filename.endswith("?")
            path = group[controller] / filename.rstrip("?")
            if optional and not path.exists():
                continue
            try:
                path.write_text(value)
            except OSError as exc:
                raise StackError(_why(f"cannot write {value} to {path}", exc)) from None
        procs = [os.fsencode(path / "cgroup.procs") for path in sorted(set(group.values()))]

        def join() -> None:  # in the child: keep it to system calls
            pid = str(os.getpid()).encode()
            for procs_file in procs:
                fd = os.open(procs_file, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
        return join

    def names(self) -> list[str]:
        """Replicas that have a group now."""
        return list(self._groups)

    def sample(self, name: str) -> CgroupSample | None:
        """What the kernel counted for replica ``name`` (None: it has no group)."""
        group = self._groups.get(name)
        if group is None or self.layout is None:
            return None
        files: dict[str, str | None] = {}
        for filename, controller in _sample_files(self.layout.version).items():
            directory = group.get(controller)
            files[filename] = _read(directory / filename) if directory else None
        if all(text is None for text in files.values()):
            return None  # the group is gone (removed behind our back)
        return sample_from(self.layout.version, files)

    def oom_killed(self, name: str) -> bool:
        """Whether the kernel killed a process of replica ``name`` for memory."""
        sample = self.sample(name)
        kills = sample.oom_kills if sample and sample.oom_kills is not None else 0
        return max(kills, self._oom_at_release.get(name, 0)) > 0

    def release(self, name: str) -> None:
        """After the replica exited: kill what is left in its group and remove it (bounded)."""
        group = self._groups.get(name)
        if group is None:
            return
        sample = self.sample(name)
        if sample and sample.oom_kills:
            self._oom_at_release[name] = sample.oom_kills
        if remove_group(sorted(set(group.values())), self.layout.version):
            del self._groups[name]
        else:
            log.warning("cgroup of %s still busy after %.0fs; close() tries again", name,
                        RELEASE_TIMEOUT)

    def close(self) -> None:
        """Remove every group of this run and its parent; safe to call twice."""
        for name in list(self._groups):
            self.release(name)
        if self.layout is not None:
            for hierarchy in self.layout.hierarchies():
                parent = hierarchy / TOP / self.parent_name
                # Groups made by a prepare() that this object no longer knows of.
                if parent.is_dir():
                    children = [p for p in parent.iterdir() if p.is_dir()]
                    remove_group(children, self.layout.version)
                _rmdir(parent)
                _rmdir(hierarchy / TOP)  # fails while another run uses it: fine
        if self._registered:
            atexit.unregister(self.close)
            self._registered = False


def remove_group(dirs: list[Path], version: int, timeout: float = RELEASE_TIMEOUT) -> bool:
    """SIGKILL every process in ``dirs`` (one group's directories), wait until they are
    empty, remove them. True once all are gone; False if they stayed busy ``timeout`` s."""
    deadline = time.monotonic() + timeout
    left = [d for d in dirs if d.is_dir()]
    if version == 2:
        for d in left:  # Linux 5.14+: the kernel kills the group's processes itself
            kill_file = d / "cgroup.kill"
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                except OSError:
                    pass
    while left:
        for d in left:
            for pid in _pids(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        left = [d for d in left if not _rmdir(d)]
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def clean_stale(layout: Layout) -> list[Path]:
    """Remove the run groups (and their replicas' groups) whose harness is gone."""
    cleaned = []
    for hierarchy in layout.hierarchies():
        top = hierarchy / TOP
        try:
            runs = [p for p in top.iterdir() if p.is_dir()]
        except OSError:
            continue
        for run in runs:
            if _owner_alive(run.name) is not False:
                continue  # alive, or not a name we make: leave it alone
            try:
                children = [p for p in run.iterdir() if p.is_dir()]
            except OSError:
                continue
            remove_group(children, layout.version)
            if _rmdir(run):
                cleaned.append(run)
        _rmdir(top)
    return cleaned


def _pids(directory: Path) -> list[int]:
    text = _read(directory / "cgroup.procs") or ""
    return [int(line) for line in text.split() if line.isdigit()]


def _read(path: Path) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _rmdir(path: Path) -> bool:
    """Remove an empty cgroup directory; True if it is gone (or never was)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _why(what: str, exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{what}: permission denied; --replica-cpus and --replica-memory need root"
    if exc.errno == errno.EROFS:
        return (f"{what}: read-only file system; per-replica limits need root with the "
                "cgroup tree writable (not an unprivileged container)")
    return f"{what}: {exc.strerror or exc}"
