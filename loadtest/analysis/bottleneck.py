"""Which part limited throughput, at each replica count?

On one machine the load generator, the balancer, the store and the replicas
share the cores: requests/s that stop growing with replicas may measure any
of them. From the CPU sampled every second (run.json's ``cpu`` section) and
the summary's segments, for each replica count (pure functions):

- CPU by part, in mean cores: generator (every Locust process), balancer,
  store, each replica and the replicas together; the machine's idle cores;
- each replica's utilisation of its CPU limit and its throttled share of the
  time (cgroup ``cpu.stat``);
- a verdict with one plain sentence, checked in this order:
  ``generator`` (near a whole core per Locust process, or Locust's own
  high-CPU warning), ``replicas`` (most replicas near their limit or throttled
  while the machine had idle cores), ``store`` (Redis near its one core),
  ``balancer`` (near a whole core per thread while the machine had idle
  cores), ``machine`` (idle near 0: everything shares the cores), else
  ``unknown`` (nothing near a limit: throughput followed the load offered).

``scaling_efficiency_checks`` then judges ``min_scaling_efficiency`` only
where the replicas were the bottleneck, at that count and at the first.

The ``cpu`` section (written by the harness's sampler)::

    {"t0": epoch s, "interval_s": 1.0, "cores": 2,
     "parts": {"generator": [cpu s per interval, ...], "balancer": [...],
               "store": [...], "replica:hello-1": [... null before and after it ran]},
     "limits": {"hello-1": {"cpus": 0.25, "request": 0.25, "memory_bytes": ...}},
     "throttled_s": {"hello-1": [...]}, "idle": [idle cpu s per interval, ...],
     "locust_cpu_warnings": [{"t": epoch s, "text": "..."}],
     "generator_processes": 1, "balancer_threads": 1}   # optional, default 1
"""

from __future__ import annotations

import math

from loadtest.analysis.checks import Check, at_least, checker, judged
from loadtest.analysis.findings import Findings
from loadtest.analysis.load import AnalysisInputError
from loadtest.analysis.thresholds import Thresholds

VERDICTS = ("generator", "replicas", "store", "balancer", "machine", "unknown")
REPLICA = "replica:"
EPS = 1e-6


def _series(cpu: dict, key: str, values) -> list[float | None]:
    if not isinstance(values, list):
        raise AnalysisInputError(f"run.json: cpu.{key} is not a list of numbers")
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
                and v >= 0:
            out.append(float(v))
        else:
            raise AnalysisInputError(f"run.json: cpu.{key} holds {v!r}, not a CPU time")
    return out


def validate_cpu(cpu: dict) -> dict:
    """The ``cpu`` section checked and normalised (one-line ``AnalysisInputError``)."""
    if not isinstance(cpu, dict):
        raise AnalysisInputError("run.json: cpu is not an object")
    t0, dt, cores = cpu.get("t0"), cpu.get("interval_s", 1.0), cpu.get("cores")
    for name, value in (("t0", t0), ("interval_s", dt), ("cores", cores)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                not math.isfinite(value):
            raise AnalysisInputError(f"run.json: cpu.{name} is {value!r}, not a number")
    if dt <= 0 or cores <= 0:
        raise AnalysisInputError("run.json: cpu.interval_s and cpu.cores must be above 0")
    def given(key: str, default):
        value = cpu.get(key)
        return default if value is None else value

    parts = given("parts", {})
    if not isinstance(parts, dict):
        raise AnalysisInputError("run.json: cpu.parts is not an object")
    limits, throttled = given("limits", {}), given("throttled_s", {})
    warnings = given("locust_cpu_warnings", [])
    if not isinstance(limits, dict) or not isinstance(throttled, dict) or \
            not isinstance(warnings, list):
        raise AnalysisInputError("run.json: cpu.limits, cpu.throttled_s or "
                                 "cpu.locust_cpu_warnings has the wrong type")
    return {
        "t0": float(t0), "interval_s": float(dt), "cores": float(cores),
        "parts": {name: _series(cpu, f"parts.{name}", v) for name, v in parts.items()},
        "limits": {h: v for h, v in limits.items() if isinstance(v, dict)},
        "throttled_s": {h: _series(cpu, f"throttled_s.{h}", v) for h, v in throttled.items()},
        "idle": _series(cpu, "idle", given("idle", [])),
        "warnings": [w for w in warnings if isinstance(w, dict)
                     and isinstance(w.get("t"), (int, float))],
        "generator_processes": _count(cpu, "generator_processes"),
        "balancer_threads": _count(cpu, "balancer_threads"),
    }


def _count(cpu: dict, key: str) -> int:
    value = cpu.get(key)
    if value is None:
        return 1
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise AnalysisInputError(f"run.json: cpu.{key} is {value!r}, not a count")
    return value


def level_windows(segments: list[dict], level: int) -> list[tuple[float, float]]:
    """The steady stretches at ``level`` replicas: segments not too short and with no
    fault in effect."""
    return [(s["t_start"], s["t_end"]) for s in segments
            if s.get("level") == level and not s.get("short") and not s.get("faults")
            and isinstance(s.get("t_start"), (int, float))
            and isinstance(s.get("t_end"), (int, float))]


def sample_indices(t0: float, dt: float, windows: list[tuple[float, float]]) -> list[int]:
    """The samples lying wholly inside the windows (sample i covers [t0 + i·dt, +dt))."""
    out: set[int] = set()
    for start, end in windows:
        lo = math.ceil((start - t0) / dt - EPS)
        hi = math.floor((end - t0) / dt + EPS)  # exclusive
        out.update(range(max(lo, 0), max(hi, 0)))
    return sorted(out)


def _mean(series: list[float | None], idx: list[int]) -> float | None:
    values = [series[i] for i in idx if i < len(series) and series[i] is not None]
    return sum(values) / len(values) if values else None


def level_usage(cpu: dict, windows: list[tuple[float, float]]) -> dict:
    """Mean cores by part, each replica against its limit, idle cores, and Locust's
    warnings, over the samples inside ``windows``. ``cpu``: from ``validate_cpu``."""
    dt = cpu["interval_s"]
    idx = sample_indices(cpu["t0"], dt, windows)
    parts = {name: _mean(series, idx) for name, series in cpu["parts"].items()
             if not name.startswith(REPLICA)}
    parts = {k: (None if v is None else v / dt) for k, v in parts.items()}
    replicas = {}
    for name, series in cpu["parts"].items():
        if not name.startswith(REPLICA):
            continue
        host = name[len(REPLICA):]
        used = _mean(series, idx)
        if used is None:
            continue  # not running during this level
        used /= dt
        limit = cpu["limits"].get(host, {})
        cpus = limit.get("cpus") if isinstance(limit.get("cpus"), (int, float)) else None
        throttled = _mean(cpu["throttled_s"].get(host, []), idx)
        replicas[host] = {
            "cores": used, "limit_cpus": cpus, "request_cpus": limit.get("request"),
            "of_limit": used / cpus if cpus else None,
            "throttled_share": None if throttled is None else throttled / dt}
    per_second = []
    for i in idx:
        values = [s[i] for n, s in cpu["parts"].items()
                  if n.startswith(REPLICA) and i < len(s) and s[i] is not None]
        if values:
            per_second.append(sum(values) / dt)
    idle = _mean(cpu["idle"], idx)
    idle = None if idle is None else idle / dt
    warnings = [w for w in cpu["warnings"] if any(a <= w["t"] <= b for a, b in windows)]
    return {"samples": len(idx), "seconds": len(idx) * dt, "parts": parts,
            "replicas_total": sum(per_second) / len(per_second) if per_second else None,
            "replicas": replicas, "idle_cores": idle,
            "idle_share": None if idle is None else idle / cpu["cores"],
            "cores": cpu["cores"], "locust_cpu_warnings": warnings}


def _cores(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _pct(share: float) -> str:
    return f"{100 * share:.0f} %"


def _span(shares: list[float]) -> str:
    low, high = _pct(min(shares)), _pct(max(shares))
    return low if low == high else f"{low[:-2]}–{high}"


def attribute(level: int, usage: dict, t: Thresholds, generator_processes: int = 1,
              balancer_threads: int = 1) -> tuple[str, str]:
    """(verdict, one plain sentence) for one replica count's ``level_usage``."""
    at = f"at {level} replica{'s' if level != 1 else ''}"
    if not usage["samples"]:
        return "unknown", f"no CPU was sampled in a steady stretch: {at} what limited " \
                          "throughput is unknown"
    parts = usage["parts"]
    gen, store, lb = parts.get("generator"), parts.get("store"), parts.get("balancer")
    idle = usage["idle_share"]
    machine_busy = idle is not None and idle <= t.bottleneck_idle_share
    room = f"the machine was {_pct(idle)} idle" if idle is not None else "idle time unknown"

    per_process = None if gen is None else gen / generator_processes
    warned = usage["locust_cpu_warnings"]
    if (per_process is not None and per_process >= t.bottleneck_core_share) or warned:
        what = []
        if per_process is not None:
            what.append(f"the load generator used {_pct(per_process)} of a core" +
                        (" per Locust process" if generator_processes > 1 else ""))
        if warned:
            what.append(f"Locust warned of its own CPU {len(warned)} time(s)")
        return "generator", f"{'; '.join(what)}: {at} this measures the generator, not the app"

    reps = usage["replicas"]
    limited = [h for h, r in reps.items()
               if (r["of_limit"] is not None and r["of_limit"] >= t.bottleneck_limit_share)
               or (r["throttled_share"] is not None
                   and r["throttled_share"] >= t.bottleneck_throttled_share)]
    if limited and 2 * len(limited) >= len(reps) and not machine_busy:
        shares = [reps[h]["of_limit"] for h in limited if reps[h]["of_limit"] is not None]
        throttled = [reps[h]["throttled_share"] or 0.0 for h in limited]
        cpus = {reps[h]["limit_cpus"] for h in limited}
        limit = f"{next(iter(cpus)):g}-CPU limit" if len(cpus) == 1 and None not in cpus \
            else "CPU limits"
        used = f"used {_span(shares)} of their {limit}" if shares else f"hit their {limit}"
        held = f" (throttled up to {_pct(max(throttled))} of the time)" \
            if max(throttled) > 0 else ""
        return "replicas", f"{len(limited)} of {len(reps)} replicas {used}{held} while " \
                           f"{room}: {at} the replicas limited throughput"
    if store is not None and store >= t.bottleneck_core_share:
        return "store", f"the store used {_pct(store)} of a core (Redis runs its commands " \
                        f"on one): {at} the store limited throughput"
    if lb is not None and lb >= t.bottleneck_core_share * balancer_threads and not machine_busy:
        threads = f"{balancer_threads} thread{'s' if balancer_threads > 1 else ''}"
        return "balancer", f"the balancer used {lb:.2f} cores ({threads}) while {room}: " \
                           f"{at} the balancer limited throughput"
    if machine_busy:
        spent = ", ".join(f"{name} {_cores(v)}" for name, v in
                          (("generator", gen), ("balancer", lb), ("store", store),
                           ("replicas", usage["replicas_total"])) if v is not None)
        also = f"; {len(limited)} replica(s) near their limit too" if limited else ""
        return "machine", f"the machine was {_pct(idle)} idle ({spent} of its " \
                          f"{usage['cores']:g} cores{also}): {at} every part shares the " \
                          "cores, so this measures the machine, not the app"
    return "unknown", f"no part was near its limit ({room}): {at} throughput followed " \
                      "the load offered"


def bottleneck_findings(cpu: dict | None, segments: list[dict], levels: list[dict],
                        t: Thresholds) -> dict:
    """Per replica count: CPU by part, replicas against their limits, idle, the verdict
    and its sentence. Without a ``cpu`` section: ``available`` False and the reason.

    Returns ``{"available", "reason", "cores", "generator_processes", "levels": [{level,
    verdict, sentence, samples, seconds, parts: {generator, balancer, store: cores},
    replicas_total, replicas: {hostname: {cores, limit_cpus, request_cpus, of_limit,
    throttled_share}}, idle_cores, idle_share, cores, locust_cpu_warnings}]}``."""
    if not cpu:
        return {"available": False, "levels": [],
                "reason": "the run recorded no CPU by part (run.json has no cpu section)"}
    cpu = validate_cpu(cpu)
    out = []
    for lv in levels:
        level = lv.get("level")
        if not isinstance(level, int) or level < 1:
            continue
        usage = level_usage(cpu, level_windows(segments, level))
        verdict, sentence = attribute(level, usage, t, cpu["generator_processes"],
                                      cpu["balancer_threads"])
        out.append({"level": level, "verdict": verdict, "sentence": sentence, **usage})
    return {"available": True, "levels": out, "reason": "", "cores": cpu["cores"],
            "generator_processes": cpu["generator_processes"]}


def scaling_efficiency_checks(levels: list[dict], bottleneck: dict,
                              t: Thresholds) -> list[Check]:
    """``min_scaling_efficiency`` at each replica count beyond the first, judged only where
    the replicas limited throughput both there and at the first count (elsewhere the
    ratio measures another part); otherwise not checked, with the reason."""
    if t.min_scaling_efficiency is None:
        return []
    by_level = {b["level"]: b for b in bottleneck.get("levels", [])}
    rows = sorted((lv for lv in levels if isinstance(lv.get("level"), int) and lv["level"] >= 1),
                  key=lambda lv: lv["level"])
    if len(rows) < 2:
        return []
    base = rows[0]["level"]
    out = []
    for lv in rows[1:]:
        n = lv["level"]
        detail = f"at {n} replicas against {base}"
        eff = lv.get("scaling_efficiency")
        reason = ""
        if not bottleneck.get("available"):
            reason = bottleneck.get("reason") or "no CPU by part was recorded"
            reason = f"what limited throughput is unknown ({reason})"
        elif eff is None:
            reason = "no scaling efficiency (the load changed over time, or no base)"
        else:
            for count in (base, n):
                b = by_level.get(count)
                if b is None or b["verdict"] != "replicas":
                    why = "nothing was measured" if b is None else b["sentence"]
                    reason = f"the replicas were not the bottleneck at {count}: {why}"
                    break
        if reason:
            out.append(judged("scaling_efficiency", None, eff, t.min_scaling_efficiency,
                             detail, {"level": n, "base": base}, reason=reason))
        else:
            out.append(at_least("scaling_efficiency", eff, t.min_scaling_efficiency, detail,
                                level=n, base=base, bottleneck="replicas"))
    return out


@checker("scaling")
def scaling_checks(f: Findings, t: Thresholds) -> list[Check]:
    """Scaling efficiency, judged only where the replicas were the bottleneck."""
    return scaling_efficiency_checks(f.levels, f.bottleneck, t)
