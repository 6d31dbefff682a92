"""Where the autoscaler's metrics come from while the run goes on.

Per replica, over the last window (the HPA's sync period):

- ``rps``: the balancer's own count of requests sent to each server (HAProxy's
  ``stot``; Traefik's Prometheus metrics where they name the server), as a
  rate; where the balancer does not count per server, the harness's records
  (which name the replica that answered).
- ``inflight``: the balancer's current sessions per server (HAProxy's
  ``scur``), sampled every second and averaged; where it has none, from the
  records by Little's law: busy time (the sum of latencies) / window.
- ``cpu``: CPU time of each replica's processes (local: psutil over the
  gunicorn process tree; Docker: the container's cgroup usage) over the
  window, as the utilisation of the replica's CPU request (usage ÷ request,
  in %; without a request, of one core), the HPA's Resource metric. For the
  HPA each replica also carries what its pod would: start time, when it
  became ready (routed), and the span its sample covers (``cpu_pods``).
- ``p95``: the 95th percentile latency of each replica's responses in the
  window, from the records.

Each sample says which source it came from; the decision records it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

import numpy as np

from loadtest.autoscale.hpa import LONG_AGO, Pod
from loadtest.stack import Stack, StackError
from loadtest.stack.base import BalancerView, ReplicaCpu


class RecordTap:
    """Per-second, per-replica counts, busy time and latencies of recent records.

    Fed by the collector's owner with each batch it writes (off the request
    path); keeps ``horizon`` seconds, so memory does not grow with the run.
    """

    def __init__(self, horizon: float = 120.0) -> None:
        self.horizon = horizon
        # second -> hostname -> [count, busy_ms, [latencies]]
        self.buckets: dict[int, dict[str, list]] = defaultdict(dict)
        self.total: dict[int, list] = defaultdict(lambda: [0, 0.0])  # second -> [count, busy]

    def feed(self, table) -> None:
        if table.num_rows == 0:
            return
        t_end = table.column("t_end").to_numpy(zero_copy_only=False)
        latency = table.column("latency_ms").to_numpy(zero_copy_only=False)
        hosts = table.column("hostname").to_pylist()
        seconds = np.floor(t_end).astype(np.int64)
        for second, host, lat in zip(seconds.tolist(), hosts, latency.tolist()):
            total = self.total[second]
            total[0] += 1
            total[1] += lat
            if host is None:
                continue
            entry = self.buckets[second].get(host)
            if entry is None:
                entry = self.buckets[second][host] = [0, 0.0, []]
            entry[0] += 1
            entry[1] += lat
            entry[2].append(lat)
        cutoff = int(time.time() - self.horizon)
        for second in [s for s in self.buckets if s < cutoff]:
            del self.buckets[second]
        for second in [s for s in self.total if s < cutoff]:
            del self.total[second]

    def window(self, start: float, end: float) -> dict[str, list]:
        out: dict[str, list] = {}
        for second in range(int(math.floor(start)), int(math.floor(end))):
            for host, (count, busy, lats) in self.buckets.get(second, {}).items():
                entry = out.setdefault(host, [0, 0.0, []])
                entry[0] += count
                entry[1] += busy
                entry[2].extend(lats)
        return out

    def service_second(self, second: int) -> tuple[int, float]:
        """(requests completed, busy ms) in one whole second, over all replicas."""
        count, busy = self.total.get(second, (0, 0.0))
        return count, busy


class MetricSource:
    """Samples the stack every second; answers per-replica values over a window."""

    def __init__(self, metric: str, stack: Stack, tap: RecordTap,
                 cpu_request: float | None = None) -> None:
        self.metric = metric
        self.cpu_request = cpu_request  # cores per replica; None: one core
        self.stack = stack
        self.tap = tap
        self.served: deque = deque(maxlen=400)    # (t, {server: served})
        self.inflight: deque = deque(maxlen=400)  # (t, {server: inflight})
        self.cpu: deque = deque(maxlen=400)       # (t, {hostname: cpu seconds})
        self.balancer_counts = True
        self.balancer_inflight = True

    def sample(self, now: float) -> None:
        if self.metric in ("rps", "inflight") and (self.balancer_counts or
                                                    self.balancer_inflight):
            try:
                rows = self.stack.balancer_view() if isinstance(self.stack, BalancerView) \
                    else []
            except StackError:
                rows = []
            served = {r.server: r.served for r in rows if r.served is not None}
            inflight = {r.server: r.inflight for r in rows if r.inflight is not None}
            if rows and not served:
                self.balancer_counts = False
            if rows and not inflight:
                self.balancer_inflight = False
            self.served.append((now, served))
            self.inflight.append((now, inflight))
        if self.metric == "cpu" and isinstance(self.stack, ReplicaCpu):
            try:
                self.cpu.append((now, self.stack.replica_cpu_seconds()))
            except StackError:
                pass

    def per_replica(self, start: float, end: float,
                    replicas: dict[str, float]) -> tuple[dict[str, float], int, str]:
        """(value per replica with a sample, replicas with none, source) over [start, end).

        ``replicas``: the replicas in service and since when; one added after
        ``start`` has no sample yet (its metric would cover part of the window).
        """
        seconds = max(end - start, 1e-9)
        full = {h for h, since in replicas.items() if since is None or since <= start}
        missing = len(replicas) - len(full)
        values: dict[str, float] = {}
        if self.metric == "rps" and self.balancer_counts and len(self.served) >= 2:
            first = _at_or_after(self.served, start)
            last = self.served[-1]
            for host in full:
                if host in first[1] and host in last[1]:
                    values[host] = (last[1][host] - first[1][host]) / max(last[0] - first[0],
                                                                          1e-9)
            return values, missing + len(full) - len(values), "balancer (requests per server)"
        if self.metric == "inflight" and self.balancer_inflight and self.inflight:
            samples = [s for t, s in self.inflight if start <= t < end]
            for host in full:
                seen = [s[host] for s in samples if host in s]
                if seen:
                    values[host] = sum(seen) / len(seen)
            return values, missing + len(full) - len(values), "balancer (in-flight per server)"
        if self.metric == "cpu":
            request = 1.0 if self.cpu_request is None else self.cpu_request
            usage = cpu_usage(self.cpu, start, end)
            for host in full:
                if host in usage:
                    values[host] = 100.0 * usage[host][0] / request
            return values, missing + len(full) - len(values), CPU_SOURCE
        # Records reach the tap when they are flushed (every second): leave the last
        # second out, or a rise of load would show only half.
        window = self.tap.window(start - 1, end - 1)
        for host in full:
            count, busy, lats = window.get(host, (0, 0.0, []))
            if self.metric == "rps":
                values[host] = count / seconds
            elif self.metric == "inflight":
                values[host] = busy / 1000.0 / seconds  # Little's law
            elif lats:  # p95: only replicas that answered have one
                values[host] = float(np.percentile(lats, 95))
        source = {"rps": "records (requests per replica)",
                  "inflight": "records (busy time / window, Little's law)",
                  "p95": "records (p95 latency per replica)"}[self.metric]
        return values, missing + len(full) - len(values), source

    def cpu_pods(self, start: float, end: float, since: dict[str, float | None],
                 started: dict[str, float | None], current: int) -> tuple[Pod, ...]:
        """The HPA's CPU input over [start, end]: every replica as a pod."""
        return cpu_pods(cpu_usage(self.cpu, start, end), since, started, self.cpu_request,
                        current, end)

    def service_value(self, second: int) -> float:
        """KPA: one service-wide value for a whole second (requests/s or in flight)."""
        count, busy = self.tap.service_second(second)
        return float(count) if self.metric == "rps" else busy / 1000.0


CPU_SOURCE = "replica CPU time (% of the CPU request)"


def cpu_usage(samples, start: float, end: float) -> dict[str, tuple[float, float, float]]:
    """Per replica: (cores used, time of its last sample, span covered) over [start, end],
    from cumulative CPU seconds sampled as ``(t, {hostname: seconds})``. A replica seen
    in fewer than two samples of the window has no value (as metrics-server needs two
    scrapes); one that joined during the window covers only the part it was there."""
    seen: dict[str, list[tuple[float, float]]] = {}
    for t, values in samples:
        if start <= t <= end:
            for host, seconds in values.items():
                seen.setdefault(host, []).append((t, seconds))
    out = {}
    for host, points in seen.items():
        (t0, s0), (t1, s1) = points[0], points[-1]
        if t1 > t0:
            out[host] = (max(0.0, (s1 - s0) / (t1 - t0)), t1, t1 - t0)
    return out


def cpu_pods(usage: dict[str, tuple[float, float, float]], since: dict[str, float | None],
             started: dict[str, float | None], request: float | None, current: int,
             now: float) -> tuple[Pod, ...]:
    """Each replica as the HPA sees its pod. ``usage``: from ``cpu_usage``; ``since``:
    replicas in service and since when (they became ready then; None: long ago);
    ``started``: when each was started (None or absent: when it became ready);
    ``current``: replicas asked for, the ones not seen yet being pods still pending. A
    replica with CPU time but not in service is running and not ready.

    Unlike metrics-server, which scrapes every 15 s or so, CPU time is read every
    second and only from replicas in service, so a new replica's first sample covers
    only time after it became ready and counts within a second or two."""
    pods = []
    for host in sorted(set(since) | set(usage)):
        ready_at = since.get(host)
        start = started.get(host)
        if ready_at is None and host in since:
            ready_at = start if start is not None else LONG_AGO
        if start is None:
            start = ready_at if ready_at is not None else now
        value, stamp, window = usage.get(host, (None, None, 0.0))
        pods.append(Pod(host, value, request, ready=host in since,
                        ready_changed=ready_at if ready_at is not None else start,
                        started=start, sample_time=stamp, sample_window=window))
    pods += [Pod(f"(pending {i + 1})", None, request, phase="Pending", ready=False)
             for i in range(max(0, current - len(pods)))]
    return tuple(pods)


def _at_or_after(samples, start: float):
    for sample in samples:
        if sample[0] >= start:
            return sample
    return samples[-1]
