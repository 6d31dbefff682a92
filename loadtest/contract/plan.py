"""The run plan: what the load, the replica count and the faults should be, over time.

Built once from the options (``build_plan``), then only queried: the shape
asks ``target(t)`` every second for the load; the conductor asks which stage
is due, when the autoscaler decides, and which faults are due. Nothing here
touches Locust or the stack, so every rule is a pure function of the options
and the time since the test started.

- The **load** is a profile over time: points joined by straight lines, in
  users (closed model) or requests/s in total (open model).
- The **scale plan** is fixed levels (one stage each), an autoscaler policy,
  or nothing (a stack the harness does not control).
- The **faults** are a schedule of ``FaultSpec``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace


class PlanError(Exception):
    """The options do not make a plan; the message is one line."""


# -- load over time --------------------------------------------------------------

#: Presets as fractions of the peak, at seconds from the start.
PRESETS: dict[str, list[tuple[float, float]]] = {
    "ramp": [(0, 0.1), (60, 1.0), (120, 1.0), (150, 0.1)],
    "spike": [(0, 0.1), (30, 0.1), (35, 1.0), (65, 1.0), (70, 0.1), (120, 0.1)],
    "wave": [(t, 0.6 - 0.4 * math.cos(2 * math.pi * t / 90)) for t in range(0, 181, 10)],
}


@dataclass(frozen=True)
class LoadProfile:
    """Load over time: ``points`` of (seconds, value), linear in between, flat after."""

    model: str  # "closed" (value = users) or "open" (value = requests/s in total)
    points: tuple[tuple[float, float], ...]
    explicit: bool = True  # False: a constant load with no end of its own

    def value_at(self, t: float) -> float:
        pts = self.points
        if t <= pts[0][0]:
            return pts[0][1]
        for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
            if t <= t1:
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
        return pts[-1][1]

    @property
    def end(self) -> float | None:
        return self.points[-1][0] if self.explicit else None

    @property
    def peak(self) -> float:
        return max(v for _, v in self.points)

    def steepest(self) -> float:
        """Largest change per second between two points (for the closed model's spawn rate)."""
        slopes = [abs(v1 - v0) / (t1 - t0) for (t0, v0), (t1, v1) in zip(self.points,
                                                                          self.points[1:])
                  if t1 > t0]
        return max(slopes, default=0.0)


#: The most users, or requests/s, a plan may ask for. Far beyond what a load generator on
#: one machine sends; above it Locust would only spend its memory spawning idle users.
MAX_LOAD = 100_000


def parse_profile(text: str, model: str, peak: float) -> LoadProfile:
    """``0s:50,60s:400`` or a preset name scaled to ``peak``."""
    text = text.strip()
    if text in PRESETS:
        return LoadProfile(model, tuple((t, max(0.0, round(f * peak, 3)))
                                        for t, f in PRESETS[text]))
    points = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        when, sep, value = part.rpartition(":")
        if not sep:
            raise PlanError(f"--load-profile: {part!r} is not TIME:VALUE (e.g. 30s:100), "
                            f"nor a preset ({', '.join(PRESETS)})")
        try:
            t = seconds(when)
            v = float(value)
        except DurationTooLong as exc:
            raise PlanError(f"--load-profile: {short(part)!r}: its time is {exc}") from None
        except (ValueError, TypeError):
            raise PlanError(f"--load-profile: {part!r} is not TIME:VALUE (e.g. 30s:100)") \
                from None
        if v < 0 or not math.isfinite(v):
            raise PlanError(f"--load-profile: {part!r}: the value must be 0 or more")
        if v > MAX_LOAD:
            raise PlanError(f"--load-profile: {part!r}: at most {MAX_LOAD:,} (users or "
                            "requests/s); one machine's load generator is far below that")
        if points and t < points[-1][0]:
            raise PlanError(f"--load-profile: {part!r} goes back in time; list points in order")
        points.append((t, v))
    if not points:
        raise PlanError("--load-profile is empty")
    if points[0][0] > 0:
        points.insert(0, (0.0, points[0][1]))
    if len(points) < 2 or points[-1][0] <= 0:
        raise PlanError("--load-profile needs a last point after 0s (the run ends there)")
    return LoadProfile(model, tuple(points))


def _number(text: str) -> bool:
    return re.fullmatch(r"\d+(\.\d+)?", text.strip()) is not None


#: The longest duration a run can hold: a week. Past it a duration is a typo (or 400
#: digits), and what it would make of the plan (Infinity, NaN) is not JSON.
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_DURATION_TEXT = "7 days"


class DurationTooLong(ValueError):
    """A duration beyond ``MAX_DURATION_S``; the message says so in words."""


def seconds(text: str) -> float:
    """A duration in seconds: 30, 2.5s, 500ms, 1m30s, 2h (ValueError otherwise; its
    subclass ``DurationTooLong`` beyond a week)."""
    text = str(text).strip()
    value = _parse_seconds(text)
    if not math.isfinite(value) or value > MAX_DURATION_S:
        raise DurationTooLong(f"longer than {MAX_DURATION_TEXT}, the longest a run can hold")
    return value


def short(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for a message (400 digits are not read)."""
    text = str(text).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _parse_seconds(text: str) -> float:
    if _number(text):
        return float(text)
    if text.endswith("ms") and _number(text[:-2]):
        return float(text[:-2]) / 1000
    if text.endswith("s") and _number(text[:-1]):
        return float(text[:-1])
    parts = _SPAN.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


_SPAN = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


# -- replicas over time ------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    index: int
    level: int        # replicas the plan asks for (0: the stack is not controlled)
    t_start: float    # seconds from the start of the test
    t_end: float


@dataclass(frozen=True)
class Policy:
    """One HPA behavior policy: at most ``value`` pods (Pods) or per cent (Percent) of
    the count at the start of each ``period`` seconds."""

    kind: str      # "Pods" or "Percent"
    value: float
    period: float  # seconds


#: Kubernetes' defaults for a direction a ``behavior`` block leaves out
#: (``pkg/apis/autoscaling/v2/defaults.go``).
DEFAULT_UP = (Policy("Pods", 4, 15), Policy("Percent", 100, 15))
DEFAULT_DOWN = (Policy("Percent", 100, 15),)


@dataclass(frozen=True)
class HpaBehavior:
    """An HPA's ``spec.behavior`` beyond the scale-down window and the tolerance (which
    stay flat in ``AutoscaleSettings``, where the analysis reads them). Built the same way
    from the flags (Kubernetes' defaults) and from ``--hpa-manifest``, so the controller
    has one way to its knobs; ``legacy``: the manifest has no ``behavior`` block."""

    scale_up_window: float = 0.0
    up_policies: tuple[Policy, ...] = DEFAULT_UP
    down_policies: tuple[Policy, ...] = DEFAULT_DOWN
    select_up: str = "Max"         # Max | Min | Disabled
    select_down: str = "Max"
    tolerance_up: float | None = None    # behavior.scaleUp.tolerance; None: ``tolerance``
    tolerance_down: float | None = None
    legacy: bool = False


@dataclass(frozen=True)
class AutoscaleSettings:
    policy: str            # hpa | kpa (simulated) | cluster (the cluster's own HPA)
    metric: str            # rps | inflight | cpu | p95
    target: float          # per replica
    min_replicas: int
    max_replicas: int
    period: float          # seconds between decisions
    scale_down_window: float
    tolerance: float = 0.1
    stable_window: float = 60.0
    panic_threshold: float = 2.0
    cpu_request: float | None = None  # cores per replica (--replica-cpu-request); None: 1
    behavior: HpaBehavior = field(default_factory=HpaBehavior)  # hpa only
    manifest: str | None = None       # --hpa-manifest, absolute: where the knobs came from


# -- faults ------------------------------------------------------------------------

FAULT_KINDS = {
    "kill-replica": "SIGKILL one replica (docker kill); [:HOSTNAME] picks which",
    "delete-replica": "delete one replica gracefully (a pod, through the Kubernetes API; "
                      "its ReplicaSet replaces it); [:HOSTNAME] picks which",
    "pause-replica": "freeze one replica (SIGSTOP / docker pause) for DURATION; [:HOSTNAME]",
    "pause-redis": "freeze Redis (SIGSTOP / docker pause) for DURATION",
    "restart-redis": "restart Redis; it loses the counter unless :persist",
    "restart-balancer": "stop and start the balancer",
    "latency": "latency:redis:MS:DURATION: delay every packet to Redis",
    "reset": "reset:redis:DURATION: reset every connection to Redis",
}


@dataclass(frozen=True)
class FaultSpec:
    at: float                 # seconds from the start of the test
    kind: str
    duration: float = 0.0     # 0: instantaneous
    target: str | None = None  # a replica's hostname, or the store
    latency_ms: float = 0.0
    persist: bool = False
    text: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def parse_fault(text: str) -> FaultSpec:
    label = f"--fault {short(text, 60)!r}"  # how every message names it
    parts = [p.strip() for p in text.split(":")]
    if len(parts) < 2:
        raise PlanError(f"{label}: expected WHEN:KIND (e.g. 30s:kill-replica)")
    when = _duration(parts[0], label, allow_zero=True)
    kind, args = parts[1], parts[2:]
    if kind not in FAULT_KINDS:
        raise PlanError(f"{label}: unknown fault {kind!r}; choose "
                        f"{', '.join(FAULT_KINDS)}")
    bad = PlanError(f"{label}: {kind} takes {FAULT_KINDS[kind]}")
    if kind in ("kill-replica", "delete-replica"):
        if len(args) > 1:
            raise bad
        return FaultSpec(when, kind, target=args[0] if args else None, text=text)
    if kind in ("pause-replica", "pause-redis"):
        if not args or len(args) > (2 if kind == "pause-replica" else 1):
            raise bad
        return FaultSpec(when, kind, _duration(args[0], label),
                         target=args[1] if len(args) > 1 else None, text=text)
    if kind == "restart-redis":
        if args not in ([], ["persist"], ["no-persist"]):
            raise bad
        return FaultSpec(when, kind, persist=args == ["persist"], text=text)
    if kind == "restart-balancer":
        if args:
            raise bad
        return FaultSpec(when, kind, text=text)
    if kind == "latency":
        if len(args) != 3 or args[0] != "redis":
            raise bad
        ms = _duration(args[1], label) * 1000
        return FaultSpec(when, kind, _duration(args[2], label), target="redis",
                         latency_ms=ms, text=text)
    # reset
    if len(args) != 2 or args[0] != "redis":
        raise bad
    return FaultSpec(when, kind, _duration(args[1], label), target="redis",
                     text=text)


def _duration(text: str, option: str, allow_zero: bool = False) -> float:
    try:
        value = seconds(text)
    except DurationTooLong as exc:
        raise PlanError(f"{option}: {short(text)!r} is {exc}") from None
    except (ValueError, TypeError):
        raise PlanError(f"{option}: {short(text)!r} is not a duration (e.g. 30s, 500ms)") \
            from None
    if value < 0 or (value == 0 and not allow_zero):
        raise PlanError(f"{option}: {short(text)!r} must be longer than zero")
    return value


# -- the plan ------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What the load should be now."""

    users: int
    spawn_rate: float
    rate: float | None  # open model: requests/s in total


@dataclass(frozen=True)
class RunPlan:
    load: LoadProfile
    stages: tuple[Stage, ...]          # fixed levels (or one stage of an uncontrolled stack)
    autoscale: AutoscaleSettings | None
    faults: tuple[FaultSpec, ...]
    duration: float
    pool: int                          # open model: users that carry the arrivals
    spawn_rate: float
    controlled: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
    min_steady: float = 0.0            # a stage holds until its level served this long

    @property
    def open_model(self) -> bool:
        return self.load.model == "open"

    def target(self, t: float) -> Target | None:
        """The load at ``t`` seconds, or None once the run is over."""
        if t >= self.duration:
            return None
        value = self.load.value_at(t)
        if self.open_model:
            return Target(self.pool, self.spawn_rate, value)
        return Target(max(0, int(round(value))), self.spawn_rate, None)

    def stage_at(self, t: float) -> Stage:
        for stage in self.stages:
            if t < stage.t_end:
                return stage
        return self.stages[-1]

    @property
    def first_level(self) -> int:
        if self.autoscale is not None:
            return self.autoscale.min_replicas
        return self.stages[0].level

    def to_dict(self) -> dict:
        return {
            "load": {"model": self.load.model, "points": [list(p) for p in self.load.points],
                     "pool": self.pool},
            "stages": [asdict(s) for s in self.stages],
            "autoscale": asdict(self.autoscale) if self.autoscale else None,
            "faults": [f.to_dict() for f in self.faults],
            "duration": self.duration,
            "controlled": self.controlled,
            "min_steady": self.min_steady,
            "notes": list(self.notes),
        }


def build_plan(opts, controlled: bool = True) -> RunPlan:
    """The plan for validated options (``loadtest.harness.options.HarnessOptions``); ``controlled``:
    the stack is the harness's to scale (its backend says so)."""
    model = opts.load_model
    users = opts.users if opts.users is not None else 1
    for name, value in (("-u/--users", users), ("--arrival-rate", opts.arrival_rate)):
        if value and value > MAX_LOAD:
            raise PlanError(f"{name} {value:g}: at most {MAX_LOAD:,}; one machine's load "
                            "generator is far below that")
    if model == "open":
        peak_default = opts.arrival_rate or 100.0
    else:
        peak_default = float(users or 1)
    if opts.load_profile:
        load = parse_profile(opts.load_profile, model, peak_default)
    elif model == "open":
        if opts.arrival_rate <= 0:
            raise PlanError("--load-model open needs a rate: --arrival-rate R or --load-profile")
        load = LoadProfile("open", ((0.0, opts.arrival_rate), (1.0, opts.arrival_rate)),
                           explicit=False)
    else:
        load = LoadProfile("closed", ((0.0, float(users)), (1.0, float(users))), explicit=False)

    levels = opts.levels if controlled else [0]
    if opts.autoscale != "none":
        levels = [opts.min_replicas]
    stage_time = opts.stage_time
    run_time = getattr(opts, "run_time", None)
    if run_time:  # Locust's --run-time ends the plan (a shape would otherwise ignore it)
        duration, ends = float(run_time), "--run-time"
    elif load.end is not None:
        duration, ends = load.end, "--load-profile"
    else:
        duration, ends = len(levels) * stage_time, ""
    if ends and opts.autoscale == "none" and len(levels) > 1:
        last_start = (len(levels) - 1) * stage_time
        if last_start >= duration:
            raise PlanError(f"{ends} ends the run at {duration:g}s, before stage "
                            f"{len(levels)} would start at {last_start:g}s: shorten "
                            "--stage-time or the levels, or lengthen the run")
    if duration > MAX_DURATION_S:
        raise PlanError(f"the plan lasts {duration / 86400:.3g} days ({len(levels)} stages of "
                        f"{stage_time:g}s): longer than {MAX_DURATION_TEXT}, the longest a "
                        "run can hold")
    stages = []
    for i, level in enumerate(levels):
        start = i * stage_time
        end = duration if i == len(levels) - 1 else (i + 1) * stage_time
        stages.append(Stage(i, level, float(start), float(end)))

    autoscale = None
    if opts.autoscale != "none":
        autoscale = AutoscaleSettings(
            policy=opts.autoscale, metric=opts.autoscale_metric, target=opts.autoscale_target,
            min_replicas=opts.min_replicas, max_replicas=opts.max_replicas,
            period=opts.autoscale_period, scale_down_window=opts.scale_down_window,
            tolerance=opts.hpa_tolerance, stable_window=opts.kpa_stable_window,
            panic_threshold=opts.kpa_panic_threshold,
            cpu_request=getattr(getattr(opts, "limits", None), "request", None),
            behavior=getattr(opts, "hpa_behavior", None) or HpaBehavior(),
            manifest=getattr(opts, "hpa_manifest", "") or None)

    faults = tuple(sorted((parse_fault(f) for f in opts.faults), key=lambda f: f.at))
    for fault in faults:
        if fault.at >= duration:
            raise PlanError(f"--fault {short(fault.text, 60)!r} is at {fault.at:g}s, after the "
                            f"run ends ({duration:g}s)")
        if not controlled:
            raise PlanError(f"--fault {short(fault.text, 60)!r}: faults need a stack the harness "
                            "controls")

    if model == "open":
        pool = opts.users if opts.users else max(20, int(math.ceil(load.peak)))
        spawn_rate = float(opts.spawn_rate or max(pool, 1))
    else:
        pool = 0
        steep = load.steepest() if load.explicit else 0.0
        spawn_rate = float(opts.spawn_rate or max(steep, load.peak, 1.0))
    min_steady = float(getattr(opts, "min_steady", 0.0) or 0.0)
    if min_steady and (load.explicit or run_time or autoscale is not None):
        raise PlanError("--min-steady moves the stages back when a rescale is slow: it "
                        "cannot hold a --load-profile, a --run-time or an autoscaler to their "
                        "times")
    return RunPlan(load=load, stages=tuple(stages), autoscale=autoscale, faults=faults,
                   duration=float(duration), pool=int(pool), spawn_rate=spawn_rate,
                   controlled=controlled, min_steady=min_steady)


#: The environment variable that shortens a run (the README-command tests set it): the
#: plan's whole timeline is compressed so that the run lasts at most this long.
MAX_RUN_TIME_ENV = "SCALECHECK_MAX_RUN_TIME"


def compress(plan: RunPlan, limit: float) -> RunPlan:
    """The same plan on a shorter clock: every time of it (stages, load points, faults and
    their durations, the autoscaler's period and windows) times ``limit / duration``, so the
    run lasts at most ``limit`` seconds with its shape kept. A plan already that short is
    returned as it is. What takes real time (starting a replica, a drain) is not
    compressed, so a shortened run answers "does it run", not "how does it behave".
    ``min_steady`` is kept in real seconds for the same reason: it is what the analysis needs
    to judge a level (its shortest steady segment is not compressed either), so a short run
    still holds each level until it can be judged."""
    if limit <= 0 or plan.duration <= limit:
        return plan
    k = limit / plan.duration
    auto = plan.autoscale
    if auto is not None:
        auto = replace(auto, period=auto.period * k,
                       scale_down_window=auto.scale_down_window * k,
                       stable_window=auto.stable_window * k,
                       behavior=_compress_behavior(auto.behavior, k))
    return replace(
        plan, duration=limit, autoscale=auto,
        load=replace(plan.load, points=tuple((t * k, v) for t, v in plan.load.points)),
        stages=tuple(replace(s, t_start=s.t_start * k, t_end=s.t_end * k)
                     for s in plan.stages),
        faults=tuple(replace(f, at=f.at * k, duration=f.duration * k) for f in plan.faults),
        notes=(*plan.notes, f"compressed {k:.3g}x by {MAX_RUN_TIME_ENV} to {limit:g}s"))


def _compress_behavior(behavior: HpaBehavior, k: float) -> HpaBehavior:
    """The behavior's window and policy periods on the shorter clock too: a policy of 1 pod
    per 15 s would otherwise hold a 10 s run at its first count."""
    return replace(behavior, scale_up_window=behavior.scale_up_window * k,
                   up_policies=tuple(replace(p, period=p.period * k)
                                     for p in behavior.up_policies),
                   down_policies=tuple(replace(p, period=p.period * k)
                                       for p in behavior.down_policies))
