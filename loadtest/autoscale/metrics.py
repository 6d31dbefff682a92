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
  gunicorn process tree; Docker: the container's cgroup usage), in % of one
  core over the window.
- ``p95``: the 95th percentile latency of each replica's responses in the
  window, from the records.

Each sample says which source it came from; the decision records it.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

import numpy as np

from loadtest.stack import Stack, StackError


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

    def __init__(self, metric: str, stack: Stack, tap: RecordTap) -> None:
        self.metric = metric
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
                rows = self.stack.balancer_view()
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
        if self.metric == "cpu":
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
            if len(self.cpu) < 2:
                return {}, len(replicas), "replica CPU time"
            first = _at_or_after(self.cpu, start)
            last = self.cpu[-1]
            span = max(last[0] - first[0], 1e-9)
            for host in full:
                if host in first[1] and host in last[1]:
                    values[host] = 100.0 * (last[1][host] - first[1][host]) / span
            return values, missing + len(full) - len(values), "replica CPU time (% of a core)"
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

    def service_value(self, second: int) -> float:
        """KPA: one service-wide value for a whole second (requests/s or in flight)."""
        count, busy = self.tap.service_second(second)
        return float(count) if self.metric == "rps" else busy / 1000.0


def _at_or_after(samples, start: float):
    for sample in samples:
        if sample[0] >= start:
            return sample
    return samples[-1]
