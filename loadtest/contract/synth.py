"""Synthetic histories in the real run format, with anomalies injected on request.

    python -m loadtest.contract.synth --requests 100000 --out reports/synth \
        --scale-levels 1,2,4 --balance roundrobin --duplicates 3 --order-violations 2

The clean history is linearizable by construction: each request takes effect
at a point inside its own [t_start, t_end], and counter values follow those
points. Each anomaly is injected so that it is the only thing wrong, which
lets the tests assert that the analyzer finds exactly what was put in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from loadtest.contract.names import add_renamed
from loadtest.contract.records import SCHEMA, PartWriter
from loadtest.contract.rundir import RunRecord

BALANCES = ("roundrobin", "skewed", "starved")


@dataclass
class Anomalies:
    duplicates: int = 0
    lost: int = 0
    order_violations: int = 0
    unknown_applied: int = 0
    unknown_not_applied: int = 0
    late_serving: int = 0
    transition_errors: int = 0  # the balancer's own 502/503s inside the scale changes
    hidden_attempts: int = 0  # requests the client resent unseen; the first attempt counted


@dataclass
class SynthSpec:
    requests: int
    levels: list[int] = field(default_factory=lambda: [1, 2, 4])
    users: int = 10
    balance: str = "roundrobin"
    anomalies: Anomalies = field(default_factory=Anomalies)
    counter_before: int = 1000
    seed: int = 1
    t0: float = 1_790_000_000.0


class SynthError(Exception):
    pass


def generate(spec: SynthSpec) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (run.json content, columns)."""
    if spec.requests < len(spec.levels) * 10:
        raise SynthError(f"--requests {spec.requests} is too few for {len(spec.levels)} stages")
    if spec.balance not in BALANCES:
        raise SynthError(f"--balance must be one of {', '.join(BALANCES)}")
    rng = np.random.default_rng(spec.seed)
    n = spec.requests
    user, latency, t_start, t_end, lin = _timeline(spec, rng)
    t_last = float(t_end.max())
    stages, events, segments = _stages(spec, t_last)
    stage = np.clip(np.searchsorted([s["t_start"] for s in stages], t_start, "right") - 1,
                    0, len(stages) - 1)

    hostname = _route(t_start, segments, spec.balance, rng)
    by_lin = np.argsort(lin, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[by_lin] = np.arange(n)
    counter = spec.counter_before + rank + 1

    cols = {
        "t_start": t_start, "t_end": t_end, "latency_ms": latency,
        "status": np.full(n, 200, dtype=np.int32), "error": np.full(n, None, dtype=object),
        "hostname": hostname, "counter": counter.astype(object),
        "counter_error": np.full(n, None, dtype=object),
        "stage": stage.astype(np.int32),
        "scale_level": np.array(spec.levels, dtype=np.int32)[stage],
        "user": user.astype(np.int64), "worker": np.full(n, "synth", dtype=object),
        "method": np.full(n, "GET", dtype=object), "name": np.full(n, "/", dtype=object),
        "bytes": np.full(n, 70, dtype=np.int64),
        "t_intended": np.full(n, np.nan),
        "attempts": np.ones(n, dtype=np.int32),
        "server": np.full(n, None, dtype=object),
        "request_id": np.full(n, None, dtype=object),
        **{name: np.full(n, None, dtype=object) for name in ("op", "key", "value", "seen",
                                                            "outcome")},
    }
    consumed = _inject(cols, by_lin, lin, spec, rng, events)
    after = spec.counter_before + consumed - spec.anomalies.lost
    return _meta(spec, stages, events, t_last, after), cols


def _timeline(spec: SynthSpec, rng) -> tuple[np.ndarray, ...]:
    """When each request ran: (user, latency in ms, t_start, t_end, lin). Each user issues
    its requests back to back; each takes effect at ``lin``, inside its own span."""
    n, users = spec.requests, spec.users
    user = np.arange(n) % users
    order = np.argsort(user, kind="stable")
    user = user[order]
    latency = 1.0 + rng.exponential(3.0, n)  # ms
    think = rng.exponential(20.0, n)  # ms between a response and the next request
    # Each user issues its requests back to back: a cumulative sum within the user.
    step = (latency + think) / 1000.0
    csum = np.cumsum(step)
    first = np.searchsorted(user, np.arange(users))
    offset = np.repeat(csum[first] - step[first], np.diff(np.append(first, n)))
    t_end = spec.t0 + rng.uniform(0, 0.002, users)[user] + (csum - offset)
    t_start = t_end - latency / 1000.0
    lin = t_start + rng.uniform(0.1, 0.9, n) * latency / 1000.0
    return user, latency, t_start, t_end, lin


def _stages(spec: SynthSpec, t_last: float) -> tuple[list[dict], list[dict], list[tuple]]:
    """The stages over the run's span, the stack's events as it scales through them, and the
    segments (start, replicas serving) that requests are routed over."""
    span = (t_last - spec.t0) / len(spec.levels)
    stages, events, sets, segments = [], [], [], []
    next_id = 1
    live: list[str] = []
    for i, level in enumerate(spec.levels):
        start = spec.t0 + i * span
        ready_delay = 0.0 if i == 0 else min(0.3, span * 0.05)
        events.append({"t": start, "event": "scale_asked", "level": level, "previous": len(live),
                       "by": "up" if i == 0 else "plan"})
        if level > len(live):
            added_at = start + ready_delay * 0.8 if i else start - 1.0
            for _ in range(level - len(live)):
                name = f"hello-{next_id}"
                next_id += 1
                live.append(name)
                events.append({"t": added_at, "event": "replica_added", "hostname": name})
            if i:  # until the new replicas are in, the old set serves
                segments.append((start, list(sets[-1])))
            segments.append((added_at if i else start, list(live)))
        else:
            for name in live[level:]:
                events.append({"t": start, "event": "replica_removing", "hostname": name})
                events.append({"t": start + 0.05, "event": "replica_removed", "hostname": name})
            live = live[:level]
            segments.append((start, list(live)))
        sets.append(list(live))
        events.append({"t": start + ready_delay, "event": "scale_ready", "level": level,
                       "hostnames": list(live)})
        stages.append({"index": i, "level": level, "t_start": start,
                       "t_ready": start + ready_delay,
                       "t_end": start + span if i < len(spec.levels) - 1 else t_last + 1e-6,
                       "users": spec.users})
    return stages, events, segments


def _meta(spec: SynthSpec, stages: list[dict], events: list[dict], t_last: float,
          after: int) -> dict:
    """run.json's content, as a real run's, with what was synthesized and how."""
    n = spec.requests
    return {
        "status": "completed", "started": spec.t0 - 2, "ended": t_last + 1,
        "locust_version": "synthetic", "stack": {"backend": "synthetic", "controlled": True},
        "url": "http://synthetic.invalid",
        "options": {"scale_levels": spec.levels, "counter_field": "json:visits"},
        "plan": {"stages": [{"index": st["index"], "level": st["level"]} for st in stages]},
        "stages": stages, "stack_events": sorted(events, key=lambda e: e["t"]),
        "counter": {"before": spec.counter_before, "after": int(after)},
        "totals": {"recorded": n, "locust": n},
        "synthetic": {"balance": spec.balance, "anomalies": spec.anomalies.__dict__,
                      "seed": spec.seed},
    }


def _route(t_start, segments, balance, rng) -> np.ndarray:
    """Hostname per request: a constant replica set per segment, balanced as asked."""
    out = np.empty(len(t_start), dtype=object)
    order = np.argsort(t_start, kind="stable")
    starts = [s for s, _ in segments] + [np.inf]
    for (seg_start, names), seg_end in zip(segments, starts[1:]):
        lo, hi = np.searchsorted(t_start[order], [seg_start, seg_end])
        idx = order[lo:hi]
        if len(idx) == 0 or not names:
            continue
        k = len(names)
        if balance == "roundrobin" or k == 1:
            pick = np.arange(len(idx)) % k
        elif balance == "skewed":
            weights = np.arange(1, k + 1, dtype=float)
            pick = rng.choice(k, size=len(idx), p=weights / weights.sum())
        else:  # starved: the newest replica gets nothing
            pick = np.arange(len(idx)) % (k - 1)
        out[idx] = np.array(names, dtype=object)[pick]
    return out


def _inject(cols, by_lin, lin, spec: SynthSpec, rng, events) -> int:
    """Apply anomalies in place; return how many increments took effect."""
    a = spec.anomalies
    touched = np.zeros(len(lin), dtype=bool)  # in linearization order
    values, unknown, cut, hidden = _pick_anomalies(cols, by_lin, a, events, touched, rng)
    _mark(cols, by_lin, values, unknown, cut, hidden)
    if a.late_serving:
        _serve_late(cols, by_lin, touched, a.late_serving, events, rng)
    return len(lin) - int(a.unknown_not_applied) - int(a.duplicates) \
        - int(a.transition_errors) + int(a.hidden_attempts)


def _picker(touched: np.ndarray, rng) -> Callable[[np.ndarray, int, str], np.ndarray]:
    """``take(candidates, k, what)``: k of the candidates (positions in linearization order),
    sorted, chosen at random so that no two anomalies meet: each is marked touched with the
    two requests either side of it, and none is taken next to one touched."""
    n = len(touched)

    def take(candidates: np.ndarray, k: int, what: str) -> np.ndarray:
        candidates = candidates[~touched[candidates]]
        candidates = candidates[(candidates > 1) & (candidates < n - 2)]
        candidates = candidates[~touched[candidates - 1] & ~touched[candidates + 1]]
        if len(candidates) < k:
            raise SynthError(f"cannot inject {k} {what} into {n} requests; use more requests")
        chosen = []
        for c in rng.permutation(candidates):
            if len(chosen) == k:
                break
            if touched[c - 2:c + 3].any():
                continue
            touched[c - 2:c + 3] = True
            chosen.append(c)
        if len(chosen) < k:
            raise SynthError(f"cannot inject {k} {what} into {n} requests; use more requests")
        return np.array(sorted(chosen), dtype=np.int64)
    return take


def _pick_anomalies(cols, by_lin, a: Anomalies, events, touched: np.ndarray,
                    rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Choose the requests of each anomaly in the counter, in a fixed order of anomalies (a
    seed gives one history), and the values they then read: returns (values, unknown, cut,
    hidden), each in linearization order."""
    take = _picker(touched, rng)
    values = cols["counter"].astype(np.int64)[by_lin]  # values in lin order
    t_start = cols["t_start"][by_lin]
    t_end = cols["t_end"][by_lin]
    user = cols["user"][by_lin]
    n = len(values)
    unknown = np.zeros(n, dtype=bool)
    shift = np.zeros(n, dtype=np.int64)
    idx = np.arange(n)
    cut = np.zeros(n, dtype=bool)
    if a.transition_errors:
        chosen = take(idx[_in_transitions(events, t_start)], a.transition_errors,
                      "transition errors")
        cut[chosen] = True
        shift[chosen] += 1  # never reached the app: later values move down
    if a.unknown_not_applied:
        chosen = take(idx, a.unknown_not_applied, "unknown outcomes")
        unknown[chosen] = True
        shift[chosen] += 1  # their value was never taken: later values move down
    if a.duplicates:
        overlap = (t_start[1:] < t_end[:-1]) & (t_start[:-1] < t_end[1:])
        chosen = take(idx[1:][overlap], a.duplicates, "duplicates")
        shift[chosen] += 1  # read the same value as the request just before (lost update)
    hidden = np.zeros(n, dtype=bool)
    if a.hidden_attempts:
        chosen = take(idx, a.hidden_attempts, "hidden attempts")
        hidden[chosen] = True
        shift[chosen] -= 1  # a first attempt, unseen, took the value before: later ones move up
    values = values - np.cumsum(shift)
    if a.unknown_applied:
        chosen = take(idx, a.unknown_applied, "unknown outcomes")
        unknown[chosen] = True  # took a value, but the client never saw it
    if a.order_violations:
        apart = (t_end[:-1] < t_start[1:]) & (user[:-1] != user[1:])
        chosen = take(idx[:-1][apart], a.order_violations, "order violations")
        touched[np.minimum(chosen + 1, n - 1)] = True
        values[chosen], values[chosen + 1] = values[chosen + 1].copy(), values[chosen].copy()
    return values, unknown, cut, hidden


def _in_transitions(events: list[dict], t_start: np.ndarray) -> np.ndarray:
    """Which requests start inside a scale change, from asked to ready + 1 s (the analysis'
    default margin), where the balancer's own errors are injected."""
    windows = [(e["t"], e["t"] + 1.0) for e in events
               if e["event"] == "scale_asked" and e.get("by") != "up"]
    if not windows:
        raise SynthError("--transition-errors needs two levels or more")
    inside = np.zeros(len(t_start), dtype=bool)
    for lo, hi in windows:
        inside |= (t_start >= lo) & (t_start < hi)
    return inside


def _mark(cols, by_lin, values, unknown, cut, hidden) -> None:
    """Write the anomalies picked (in linearization order) into the columns (in the
    columns' order): counter values, unknown outcomes, hidden attempts, cut requests."""
    counter = np.empty(len(values), dtype=object)
    counter[by_lin] = np.where(unknown, None, values).astype(object)
    cols["counter"] = counter
    unknown_rows = by_lin[unknown]
    cols["status"][unknown_rows] = 0
    cols["error"][unknown_rows] = "ReadTimeout: timed out"
    cols["hostname"][unknown_rows] = None
    cols["counter_error"][unknown_rows] = "no response"
    cols["attempts"][by_lin[hidden]] = 2
    cut_rows = by_lin[cut]
    cols["counter"][cut_rows] = None
    cols["status"][cut_rows] = np.where(np.arange(len(cut_rows)) % 2, 502, 503)
    cols["error"][cut_rows] = [f"HTTP {s}" for s in cols["status"][cut_rows]]
    cols["hostname"][cut_rows] = None
    cols["counter_error"][cut_rows] = "not JSON (status 503)"


def _serve_late(cols, by_lin, touched: np.ndarray, k: int, events: list[dict], rng) -> None:
    """k successful requests after the first scale-down, not touched by another anomaly,
    answered by the replica it removed."""
    removed = [e for e in events if e["event"] == "replica_removed"]
    if not removed:
        raise SynthError("--late-serving needs a scale-down among the levels")
    gone = removed[0]
    later = np.flatnonzero((cols["t_start"] > gone["t"] + 0.01) & (cols["status"] == 200))
    later = later[~np.isin(later, by_lin[touched])]
    if len(later) < k:
        raise SynthError("not enough requests after the scale-down for --late-serving")
    cols["hostname"][rng.choice(later, k, replace=False)] = gone["hostname"]


def write(out: Path, meta: dict, cols: dict[str, np.ndarray], chunk: int = 1_000_000) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SynthError(f"{out} is not empty")
    record = RunRecord(out, **meta)
    record.data["run_id"] = out.name
    writer = PartWriter(out, "synth")
    n = len(cols["t_start"])
    order = np.argsort(cols["t_start"], kind="stable")  # parts in time order, as a real run's
    for lo in range(0, n, chunk):
        rows = order[lo:lo + chunk]
        arrays = [pa.array(cols[f.name][rows], type=f.type, from_pandas=True) for f in SCHEMA]
        writer.write(pa.Table.from_arrays(arrays, schema=SCHEMA))
    record.save()
    record.release_reserve()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.contract.synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    add_renamed(parser.add_argument, "--scale-levels", old=["--levels"], dest="scale_levels",
                default="1,2,4", metavar="N,N,...",
                help="replica counts, one stage each, as the harness's --scale-levels "
                     "(default: 1,2,4; --levels, the old name, works for one release)")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--balance", choices=BALANCES, default="roundrobin",
                        help="how the synthetic balancer spreads the requests: evenly, or "
                             "skewed, or starving a replica (default: roundrobin)")
    parser.add_argument("--seed", type=int, default=1)
    for name in Anomalies.__dataclass_fields__:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=0, metavar="N",
                            help=f"inject N {name.replace('_', ' ')}")
    args = parser.parse_args(argv)
    try:
        levels = [int(x) for x in args.scale_levels.split(",")]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--scale-levels: expected replica counts like 1,2,4, got "
                     f"{args.scale_levels!r}")
    anomalies = Anomalies(**{k: getattr(args, k) for k in Anomalies.__dataclass_fields__})
    spec = SynthSpec(args.requests, levels, args.users, args.balance, anomalies, seed=args.seed)
    started = time.perf_counter()
    try:
        meta, cols = generate(spec)
        write(args.out, meta, cols)
    except SynthError as exc:
        print(f"synth: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "requests": args.requests,
                      "seconds": round(time.perf_counter() - started, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
