"""CPU used by each part of a run, once a second: which part limited the throughput?

On one machine the load generator, the balancer, the store and the replicas
share the cores. ``CpuSampler`` reads, every ``interval`` seconds, the CPU
time each part used in that interval, each limited replica's throttled time,
and the machine's idle time; the analysis reads the result (run.json's
``cpu`` section) to name the bottleneck.

Where the figures come from:
- a replica in a cgroup (``loadtest.stack.limits``): its group's own counters,
  exact (nanoseconds) and cheap (four small files);
- any other part: its processes and their descendants, from ``/proc/<pid>/stat``
  (clock ticks, 10 ms). A process belongs to the part of its nearest listed
  ancestor, so the harness's children that are parts of their own (replicas,
  the balancer, the store) do not count as the generator. Descendants are found
  through ``/proc/<pid>/task/<tid>/children`` (a scan of ``/proc`` where the
  kernel lacks it); a process that ends between two readings loses what it
  used since the last one;
- idle: ``/proc/stat`` (idle + iowait), in core-seconds.

Cost: psutil's ``process_iter`` took 16 ms per reading for 105 processes here,
a full scan of ``/proc`` 4 ms; walking only the parts' trees reads a few
files per process. The benchmark ``benchmarks/sampler.py`` measures it.

Memory: one float per part per interval while the part exists (a 1-hour run
with 64 replicas present throughout: 64 x 3600 = 230,000 floats, 1.8 MB as
8-byte doubles, twice that with throttled time).
"""

from __future__ import annotations

import logging
import math
import os
import time
from array import array
from collections.abc import Callable
from typing import Any

import gevent
import psutil

from loadtest.stack.limits import ReplicaCgroups
from loadtest.stack.procfs import proc_stat

log = logging.getLogger(__name__)

REPLICA = "replica:"          # parts named "replica:<hostname>" may be read from a cgroup
MAX_WARNINGS = 1000           # Locust warns at most every 10 s: enough for a day
_TICK = os.sysconf("SC_CLK_TCK")


class Series:
    """Values for consecutive intervals from ``start``; NaN where not known."""

    __slots__ = ("start", "values")

    def __init__(self, start: int) -> None:
        self.start = start
        self.values = array("d")

    def put(self, index: int, value: float | None) -> None:
        gap = index - (self.start + len(self.values))
        if gap > 0:  # the part was away for a while and is back
            self.values.extend([math.nan] * gap)
        self.values.append(math.nan if value is None else value)

    def to_list(self, length: int, digits: int = 4) -> list[float | None]:
        out: list[float | None] = [None] * length
        for i, value in enumerate(self.values):
            if self.start + i < length and not math.isnan(value):
                out[self.start + i] = round(value, digits)
        return out


def slots(t0: float, interval: float, done: int, now: float) -> int:
    """How many intervals a reading at ``now`` closes, ``done`` being closed already.

    At least one; more when the reading came late (the greenlet was held up), so that
    index k always stands for [t0 + k*interval, t0 + (k+1)*interval).
    """
    return max(1, round((now - t0) / interval) - done)


class CpuSampler:
    """CPU by part, once an ``interval``; a gevent greenlet inside the Locust process."""

    def __init__(self, parts: Callable[[], dict[str, list[int]]],
                 cgroups: ReplicaCgroups | None = None, interval: float = 1.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self._parts_fn = parts
        self._cgroups = cgroups
        self.interval = interval
        self.cores = os.cpu_count() or 1
        self.t0: float | None = None         # epoch time of the first reading
        self._m0 = 0.0                        # the same on the monotonic clock
        self._m_last = 0.0
        self._done = 0                        # intervals closed
        self._cpu: dict[str, Series] = {}
        self._throttled: dict[str, Series] = {}
        self._idle = Series(0)
        self._last_parts: dict[str, list[int]] = {}
        # Previous cumulative reading per part: (source, cpu seconds, throttled seconds).
        self._prev: dict[str, tuple[str, float, float | None]] = {}
        self._procs: dict[tuple[int, int], float] = {}   # (pid, start) -> CPU seconds
        self._prev_idle: float | None = None
        self._limits: dict[str, dict] = {}
        self._warnings: list[dict] = []
        self._greenlet: gevent.Greenlet | None = None
        self._scan_proc = False               # no task/*/children: scan /proc instead
        self._complained = False
        self.own_cpu_s = 0.0                  # CPU spent reading (the benchmark reports it)
        self.readings = 0

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        """Stop reading (bounded); the interval in progress is dropped."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)
            self._greenlet = None

    def register(self, environment: Any) -> None:
        """Record Locust's own high-CPU warning (its ``cpu_warning`` event) as evidence."""
        environment.events.cpu_warning.add_listener(self.on_cpu_warning)

    def on_cpu_warning(self, cpu_usage: float = 0.0, **_kwargs: Any) -> None:
        if len(self._warnings) < MAX_WARNINGS:
            self._warnings.append({"t": round(time.time(), 3),
                                   "cpu_percent": round(float(cpu_usage), 1)})

    def _loop(self) -> None:
        self.read()
        while True:
            deadline = self._m0 + (self._done + 1) * self.interval
            gevent.sleep(max(0.0, deadline - time.monotonic()))
            self.read()

    # -- one reading ------------------------------------------------------------------------

    def read(self) -> None:
        """Take one reading: the first sets the baseline, each next one closes interval(s)."""
        cost = time.thread_time()
        try:
            self._read(time.monotonic())
        except Exception:  # noqa: BLE001 - the sampler must never end a run
            if not self._complained:
                log.exception("CPU sampler: a reading failed (later failures not logged)")
                self._complained = True
        self.own_cpu_s += time.thread_time() - cost
        self.readings += 1

    def _read(self, now: float) -> None:
        try:
            parts = {str(k): [int(p) for p in v] for k, v in self._parts_fn().items()}
            self._last_parts = parts
        except Exception:  # noqa: BLE001 - keep the last known parts
            parts = self._last_parts
        cumulative = self._cumulative(parts)
        idle = _idle_seconds()
        if self.t0 is None:  # the baseline
            self.t0, self._m0, self._m_last = time.time(), now, now
            self._prev_idle = idle
            self._prev = {name: (source, cpu, throttled)
                          for name, (source, cpu, _delta, throttled) in cumulative.items()}
            return
        count = slots(self._m0, self.interval, self._done, now)
        scale = self.interval / max(now - self._m_last, 1e-6)   # per interval, even if late
        for name, (source, cpu, delta, throttled) in cumulative.items():
            prev = self._prev.get(name)
            value = None
            if source == "tree":
                value = delta if prev is not None and prev[0] == "tree" else None
            elif prev is not None and prev[0] == source:
                value = max(0.0, cpu - prev[1])
            throttled_delta = None
            if throttled is not None and prev is not None and prev[0] == source \
                    and prev[2] is not None:
                throttled_delta = max(0.0, throttled - prev[2])
            series = self._cpu.setdefault(name, Series(self._done))
            for k in range(count):
                series.put(self._done + k, None if value is None else value * scale)
            if throttled is not None:
                th = self._throttled.setdefault(name[len(REPLICA):], Series(self._done))
                for k in range(count):
                    th.put(self._done + k, None if throttled_delta is None
                           else throttled_delta * scale)
        self._prev = {name: (source, cpu, throttled)
                      for name, (source, cpu, _delta, throttled) in cumulative.items()}
        idle_delta = max(0.0, idle - self._prev_idle) * scale if idle is not None \
            and self._prev_idle is not None else None
        for k in range(count):
            self._idle.put(self._done + k, idle_delta)
        self._prev_idle = idle
        self._done += count
        self._m_last = now

    def _cumulative(self, parts: dict[str, list[int]]) \
            -> dict[str, tuple[str, float, float | None, float | None]]:
        """part -> (source, cumulative CPU s, CPU s since the last reading for trees,
        cumulative throttled s). Parts with nothing to read are left out (null)."""
        out: dict[str, tuple[str, float, float | None, float | None]] = {}
        tree_parts = {}
        for name, pids in parts.items():
            sample = None
            if self._cgroups is not None and name.startswith(REPLICA):
                sample = self._cgroups.sample(name[len(REPLICA):])
            # A group outlives its processes until released: gone means gone.
            if sample is not None and sample.cpu_seconds is not None and \
                    (not pids or any(_proc_stat(pid) is not None for pid in pids)):
                hostname = name[len(REPLICA):]
                limits = self._cgroups.limits
                throttled = sample.throttled_seconds if limits.cpus is not None else None
                out[name] = ("cgroup", sample.cpu_seconds, None, throttled)
                self._limits[hostname] = limits.to_dict()
            else:
                tree_parts[name] = pids
        # Every part's roots stop the walk of every other part's tree.
        roots = {pid: name for name, pids in parts.items() for pid in pids}
        procs: dict[tuple[int, int], float] = {}
        ppids = _ppid_map() if self._scan_proc and tree_parts else None
        for name, pids in tree_parts.items():
            members = self._members(pids, roots, name, ppids)
            total, delta, alive = 0.0, 0.0, False
            for pid in members:
                stat = _proc_stat(pid)
                if stat is None:
                    continue
                alive = True
                key, cpu = (pid, stat[1]), stat[0]
                procs[key] = cpu
                total += cpu
                # Known: what it used since; new: born since the last reading (or newly
                # a member), all of it is this interval's.
                delta += cpu - self._procs.get(key, 0.0)
            if alive:
                out[name] = ("tree", total, max(0.0, delta), None)
        self._procs = procs
        return out

    def _members(self, pids: list[int], roots: dict[int, str], name: str,
                 ppids: dict[int, list[int]] | None) -> set[int]:
        seen: set[int] = set()
        stack = list(pids)
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            if ppids is not None:
                children = ppids.get(pid, [])
            else:
                children = _children(pid)
                if children is None:  # the kernel lacks task/*/children: scan instead
                    self._scan_proc = True
                    ppids = _ppid_map()
                    children = ppids.get(pid, [])
            stack.extend(c for c in children if roots.get(c, name) == name)
        return seen

    # -- the result ---------------------------------------------------------------------------

    def result(self) -> dict:
        """run.json's ``cpu`` section: CPU seconds used by each part during each interval."""
        n = self._done
        return {
            "t0": round(self.t0, 3) if self.t0 is not None else None,
            "interval_s": self.interval,
            "cores": self.cores,
            "parts": {name: s.to_list(n) for name, s in self._cpu.items()},
            "limits": dict(self._limits),
            "throttled_s": {name: s.to_list(n) for name, s in self._throttled.items()},
            "idle": self._idle.to_list(n),
            "locust_cpu_warnings": list(self._warnings),
        }


# -- /proc ---------------------------------------------------------------------------------

def _proc_stat(pid: int) -> tuple[float, int] | None:
    """(CPU seconds used by the process, all threads; its start time in ticks since boot),
    or None if it is gone or a zombie."""
    stat = proc_stat(pid)
    if stat is None or not stat.alive:
        return None
    return stat.cpu_ticks / _TICK, stat.start_ticks


def _children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` ([] if it is gone); None if the kernel cannot tell."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                out.extend(int(c) for c in fh.read().split())
        except FileNotFoundError:
            if os.path.isdir(f"/proc/{pid}/task/{tid}"):
                return None  # the thread is there, its children file is not
        except OSError:
            continue
    return out


def _ppid_map() -> dict[int, list[int]]:
    """parent pid -> children pids, from one scan of /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(entry)
        if stat is not None:
            out.setdefault(stat.ppid, []).append(int(entry))
    return out


def _idle_seconds() -> float | None:
    try:
        times = psutil.cpu_times()
    except (OSError, psutil.Error):
        return None
    return times.idle + getattr(times, "iowait", 0.0)
