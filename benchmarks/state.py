"""The linearizability checker's time and memory; target 100,000 ops <= 10 s, memory flat.

A register history of 100,000 operations over 1,000 keys from concurrent clients, with
some unknown and failed outcomes.

    python -m benchmarks.state [--sizes 100000,400000] [--keys 1000] [--clients 32]

The history is generated as it is checked (a generator, in ``t_start`` order), so the
memory measured is the checker's: it must not grow with the history (compare 100k and
400k). Each size runs in a child process: seconds of checking (generation alone is timed
apart and taken off), the checker's peak allocation (tracemalloc, a second pass) and the
child's peak RSS. No process of the stack is started: nothing here needs the lock.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Iterator

from loadtest.analysis.history import Op

TARGET_S = 10.0
T0 = 1_700_000_000.0


def register_history(n: int, keys: int = 1000, clients: int = 32, seed: int = 1,
                     unknown: float = 0.01, fail: float = 0.005) -> Iterator[Op]:
    """``n`` operations of a linearizable register store, sorted by ``t_start``.

    Each client runs operations back to back on random keys (40 % writes of unique
    values, 60 % reads); each takes effect at a random instant within its span and a read
    returns the value of the latest write to take effect before it. An unknown outcome
    (a 0.5 s timeout) took effect or not, by a coin; a failed write had no effect."""
    rng = random.Random(seed)
    clock = [(T0 + rng.random() * 0.001, c) for c in range(clients)]
    heapq.heapify(clock)
    effects: dict[int, list[tuple[float, int]]] = {}   # key -> [(instant, value)] by instant
    pending: deque[tuple[dict, float, bool, int]] = deque()  # (fields, instant, final, key)
    value = made = 0
    while made < n or pending:
        now = clock[0][0] if made < n else float("inf")
        while pending and (pending[0][2] or pending[0][1] < now):
            fields, instant, final, key = pending.popleft()
            if not final:  # a read: every write that took effect before it is known now
                shelf = effects.get(key, [])
                i = bisect.bisect_left(shelf, (instant, -1))
                fields["seen"] = shelf[i - 1][1] if i else None
                if made < n:
                    _trim(shelf, now)
            yield Op(**fields)
        if made >= n:
            break
        start, client = heapq.heappop(clock)
        key = rng.randrange(keys)
        took = 0.0005 + rng.expovariate(1 / 0.003)
        instant = start + rng.random() * took
        roll = rng.random()
        outcome = "unknown" if roll < unknown else "fail" if roll < unknown + fail else "ok"
        end = start + (0.5 if outcome == "unknown" else took)
        fields = {"process": f"local/{client}", "f": "read", "key": f"k{key}", "value": None,
                  "seen": None, "outcome": outcome, "t_start": start, "t_end": end,
                  "replica": f"hello-{client % 3 + 1}", "status": 200 if outcome == "ok" else 0,
                  "index": made}
        if rng.random() < 0.4:
            value += 1
            fields.update(f="write", value=value)
            if outcome == "ok" or (outcome == "unknown" and rng.random() < 0.5):
                bisect.insort(effects.setdefault(key, []), (instant, value))
            pending.append((fields, instant, True, key))
        else:
            pending.append((fields, instant, outcome != "ok", key))
        made += 1
        heapq.heappush(clock, (end + rng.random() * 0.001, client))


def _trim(shelf: list, now: float) -> None:
    """Forget effects no later read can need (keep the last one before the horizon)."""
    horizon = now - 1.0
    i = bisect.bisect_left(shelf, (horizon, -1))
    if i > 1:
        del shelf[: i - 1]


def _one(n: int, keys: int, clients: int) -> dict:
    from loadtest.analysis.linearizable import check_register

    started = time.perf_counter()
    count = sum(1 for _ in register_history(n, keys, clients))
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    result = check_register(register_history(n, keys, clients))
    total_s = time.perf_counter() - started
    tracemalloc.start()
    check_register(register_history(n, keys, clients))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"ops": count, "valid": result["valid"], "keys": result["keys"],
            "unknown": result["unknown"], "states": result["states_explored"],
            "generate_s": round(generate_s, 2), "check_s": round(total_s - generate_s, 2),
            "peak_mb": round(peak / 2**20, 1),
            "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench_state(sizes: tuple[int, ...] = (100_000, 400_000), keys: int = 1000,
                clients: int = 32) -> list[dict]:
    """Check generated register histories of each size; print and return the figures."""
    print(f"== state: linearizability of a register history ({keys:,} keys, {clients} "
          "concurrent clients, 1 % unknown, 0.5 % failed)")
    print(f"{'ops':>9} {'valid':>6} {'check s':>8} {'gen s':>6} {'peak MB':>8} {'RSS MB':>7}"
          f" {'states':>9}  target")
    rows = []
    for n in sizes:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.state", "--one", str(n),
                               "--keys", str(keys), "--clients", str(clients)],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            print(f"{n:>9} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        target = f"<= {TARGET_S:g} s" if n <= 100_000 else "memory as at 100k"
        print(f"{row['ops']:>9,} {row['valid']!s:>6} {row['check_s']:>8.2f} "
              f"{row['generate_s']:>6.2f} {row['peak_mb']:>8.1f} {row['rss_mb']:>7.1f} "
              f"{row['states']:>9,}  {target}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,400000")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.keys, args.clients)))
        return
    bench_state(tuple(int(s) for s in args.sizes.split(",")), args.keys, args.clients)


if __name__ == "__main__":
    main()
