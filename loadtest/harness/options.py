"""The harness's own Locust options, and their validation.

Options are declared on Locust's parser so they show in the web UI (Locust's
``--help`` is printed before a locustfile loads, so it cannot list them:
``scalecheck options`` does). Each option's default is written once, in ``OPTIONS``
(the backends' own options in their ``add_arguments``). A word from a fixed set
(``--stack``, ``--balancer``, ``--load-model``, ``--autoscale``, ``--autoscale-metric``)
is refused by argparse as it is parsed (``Choice``). Every value is checked in
``validate``, topic by topic (the stack, the fields, the load, the autoscaler,
the app, the replicas' limits), which turns bad input into a ``UsageError`` with a
one-line message (exit code 2) before anything is created: no run directory, no
process. The plan is built there, once, from the validated options.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

from loadtest.autoscale import hpa_manifest
from loadtest.contract.plan import (
    MAX_DURATION_S,
    MAX_DURATION_TEXT,
    MAX_RUN_TIME_ENV,
    PRESETS,
    DurationTooLong,
    HpaBehavior,
    PlanError,
    RunPlan,
    build_plan,
    compress,
    short,
)
from loadtest.contract.plan import seconds as plan_seconds
from loadtest.harness.collector import FieldSpec
from loadtest.stack import BACKENDS, backend_class
from loadtest.stack.base import BALANCERS, FAULT_NEEDS, app_arguments
from loadtest.stack.limits import Limits, parse_cpus, parse_memory

#: Resident memory of one replica (gunicorn, gthread, 4 threads), measured on the
#: development machine; the default --max-replicas keeps replicas within half the RAM.
REPLICA_MEMORY_MB = 60
MAX_REPLICAS_CAP = 64
LOAD_MODELS = ("closed", "open")
AUTOSCALERS = ("none", "hpa", "kpa", "cluster")
#: The embedded cluster's --horizontal-pod-autoscaler-sync-period (Kubernetes' default).
CLUSTER_HPA_SYNC_S = 15.0
AUTOSCALE_METRICS = ("rps", "inflight", "cpu", "p95")
DEFAULT_STAGE_TIME = "30s"
MAX_DEFAULT_TIMEOUT_S = 10.0  # the default request timeout: a third of a stage, at most this


class UsageError(Exception):
    """Bad input from the user; the message is one line."""


def default_max_replicas() -> int:
    available = psutil.virtual_memory().available / 2**20
    return max(1, min(MAX_REPLICAS_CAP, int(available * 0.5 // REPLICA_MEMORY_MB)))


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of words. Checked twice with one message: as argparse's ``type=``
    (a bad word on the command line or in a config file is argparse's one line, exit 2,
    and the set is argparse's ``choices``, which Locust's web UI shows as a list), and in
    ``validate`` through ``check``, since the web UI and ``fixed=`` hand values over as
    plain strings that never pass through argparse."""

    values: tuple[str, ...]
    #: How an unknown word is called in the message ("unknown backend"), or "" for
    #: the plain "'x': choose a, b".
    unknown: str = ""

    def problem(self, value: Any) -> str:
        """What is wrong with ``value``, without the option's name (argparse adds it)."""
        said = f"{self.unknown} {short(value)!r}; " if self.unknown else f"{short(value)!r}: "
        return f"{said}choose {', '.join(self.values)}"

    def __call__(self, text: Any) -> str:
        value = str(text).strip()
        if value not in self.values:
            raise argparse.ArgumentTypeError(self.problem(text))
        return value

    def check(self, value: Any, flag: str) -> str:
        """``value`` if it is one of the set, else a UsageError naming ``flag``."""
        try:
            return self(value)
        except argparse.ArgumentTypeError:
            sep = ": " if self.unknown else " "
            raise UsageError(f"{flag}{sep}{self.problem(value)}") from None


STACKS = Choice(BACKENDS, unknown="unknown backend")
BALANCER_NAMES = Choice(BALANCERS)
LOAD_MODEL = Choice(LOAD_MODELS)
AUTOSCALER = Choice(AUTOSCALERS)
AUTOSCALE_METRIC = Choice(AUTOSCALE_METRICS)


@dataclass(frozen=True)
class Opt:
    flag: str
    default: Any
    metavar: str | None
    help: str
    type: type | None = None
    action: str | None = None
    choice: Choice | None = None  # a fixed set, checked at parse time (and in validate)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[Opt, ...] = (
    Opt("--stack", "local", "BACKEND", f"Stack under test: {' | '.join(BACKENDS)} "
        "(default: local)", choice=STACKS),
    Opt("--balancer", "traefik", "NAME",
        f"Balancer in front of the replicas: {' | '.join(BALANCERS)} (default: traefik)",
        choice=BALANCER_NAMES),
    Opt("--stack-port", 4000, "PORT", "Port of the balancer on 127.0.0.1 (default: 4000)", int),
    Opt("--api-port", 0, "PORT",
        "The balancer's API/dashboard on 127.0.0.1 (default: 8080 if free, else any)", int),
    Opt("--scale-levels", "1,2,4", "N,N,...",
        "Replica counts, one stage each, in order (default: 1,2,4)"),
    Opt("--stage-time", "", "TIME", "How long each stage lasts, e.g. 20s, 1m30s (default: "
        f"Locust's --run-time shared among the levels, else {DEFAULT_STAGE_TIME})"),
    Opt("--min-steady", "0s", "TIME",
        "Fixed levels: a stage does not end before its replicas served steadily this long, "
        "as the analysis counts steady (from 1 s after the level was ready to 1 s before the "
        "next change); a slow rescale then moves the later stages back rather than leaving a "
        "level unjudged (default 0s: the plan's times hold)"),
    Opt("--max-replicas", 0, "N",
        "Highest replica count allowed, for levels and the autoscaler (default, or 0: what "
        f"half the free memory holds at ~{REPLICA_MEMORY_MB} MB a replica, at most "
        f"{MAX_REPLICAS_CAP})", int),
    Opt("--replace-dead", False, None,
        "Replace a replica that dies, as an orchestrator would (default: report it only)",
        action="store_true"),
    Opt("--replica-cpus", "", "CPUS",
        "CPU limit of each replica, as Compose's cpus or a pod's limits.cpu: 0.25 or 250m "
        "(embedded stack: a cgroup per replica, as root)"),
    Opt("--replica-memory", "", "SIZE",
        "Memory limit of each replica, as Compose's mem_limit: 256M, 1G, 512Mi"),
    Opt("--replica-cpu-request", "", "CPUS",
        "The CPU request the HPA's cpu utilisation is of, as a pod's requests.cpu (default: "
        "--replica-cpus, else one core)"),
    Opt("--run-dir", "", "DIR", "Where to record the run (default: reports/<UTC timestamp>; "
        "reports/latest points at the newest)"),
    Opt("--hostname-field", "", "SRC:NAME",
        "Where a response says which replica served it: json:FIELD, header:NAME, or balancer "
        "(the harness's balancer names it; where the app says nothing, it does anyway) "
        "(default: json:hostname for the hello app, balancer for another)"),
    Opt("--counter-field", "", "SRC:NAME",
        "Where a response carries the counter value: json:FIELD, header:NAME, or none if the "
        "app has no counter (default: json:visits for the hello app, none for another)"),
    Opt("--rate-per-user", 0.0, "RPS", "Closed model: fixed requests/s per user (Locust's "
        "constant_throughput); 0 = as fast as possible (default)", float),
    Opt("--load-model", "closed", "MODEL",
        "closed: -u users send back to back (Locust's way); open: requests arrive at a rate "
        "whatever the app's speed (default: closed)", choice=LOAD_MODEL),
    Opt("--load-profile", "", "T:V,...",
        "Load over time, linear between points, e.g. 0s:50,60s:400,120s:50, or a preset "
        "(ramp, spike, wave); values are req/s (open) or users (closed); the run ends at the "
        "last point"),
    Opt("--arrival-rate", 0.0, "RPS",
        "Shorthand for --load-model open at a constant rate (default 0: not used)", float),
    Opt("--autoscale", "none", "POLICY",
        "Let an autoscaler choose the replica count: none | hpa | kpa (the harness's "
        "simulations) | cluster (--stack kubernetes: the cluster's own HPA, from the "
        "manifests or from these flags; the harness only watches) (default: none; hpa "
        "with --hpa-manifest)", choice=AUTOSCALER),
    Opt("--hpa-manifest", "", "FILE",
        "HPA: simulate the team's HorizontalPodAutoscaler (autoscaling/v2): its min/max "
        "replicas, metric and target, behavior; implies --autoscale hpa"),
    Opt("--autoscale-metric", "rps", "METRIC",
        "What the autoscaler watches, per replica: rps | inflight | cpu | p95 (default: rps)",
        choice=AUTOSCALE_METRIC),
    Opt("--autoscale-target", 0.0, "VALUE",
        "Target value of the metric per replica (rps, requests in flight, CPU %% of the "
        "request, or p95 ms)", float),
    Opt("--min-replicas", 1, "N", "Autoscaler: fewest replicas (default: 1)", int),
    Opt("--autoscale-period", "15s", "TIME",
        "Autoscaler: how often it decides (HPA's sync period; default 15s; KPA ticks every 2s)"),
    Opt("--scale-down-window", "300s", "TIME",
        "HPA: scale-down stabilisation window (default 300s); KPA: its stable window is "
        "--kpa-stable-window"),
    Opt("--hpa-tolerance", 0.1, "RATIO",
        "HPA: no change while metric/target is within 1 +/- this (default 0.1)", float),
    Opt("--kpa-stable-window", "60s", "TIME",
        "KPA: stable window (default 60s; the panic window is 10%% of it)"),
    Opt("--kpa-panic-threshold", 2.0, "RATIO",
        "KPA: enter panic when desired/ready reaches this (default 2.0 = 200%%)", float),
    Opt("--slo-p95-ms", 0.0, "MS",
        "The latency objective the autoscaling section judges against (p95, ms)", float),
    Opt("--request-timeout", "", "TIME",
        "How long a request may wait for its answer before it counts as having none (an "
        "unknown outcome; requests_stalled judges them); at the end, requests in flight get "
        "at most 2s more, then are recorded as stopped in flight (default: a third of a "
        "stage, between 1s and 10s)"),
    Opt("--request-path", "/", "PATH",
        "loadtest/hello.py: the path every request asks for (default /; e.g. /products for "
        "an app with no page at /)"),
    Opt("--fault", [], "WHEN:KIND[:ARGS]",
        "Inject a fault, e.g. 30s:kill-replica, 45s:pause-redis:5s, 60s:restart-redis, "
        "70s:latency:redis:50ms:10s (repeat, or separate with commas)", action="append"),
)
DEFAULTS = {opt.dest: opt.default for opt in OPTIONS}


def add_arguments(parser, defaults: dict[str, Any] | None = None) -> None:
    """Declare every option on Locust's parser; ``defaults``: a locustfile's own
    (e.g. ``loadtest/state.py`` carries no counter)."""
    group = parser.add_argument_group("scalecheck", "Stack, plan, load, autoscaler, faults")

    def add(*args, **kwargs):
        # Locust shows an option in its web UI only when the action says so;
        # options added through a group do not get that mark by themselves.
        action = group.add_argument(*args, **kwargs)
        action.include_in_web_ui = True
        return action

    mine = defaults or {}
    for opt in OPTIONS:
        kwargs = {"default": mine.get(opt.dest, opt.default), "help": opt.help}
        if opt.action:
            kwargs["action"] = opt.action
            if opt.action == "append":
                kwargs["default"] = list(kwargs["default"])
        if opt.metavar:
            kwargs["metavar"] = opt.metavar
        if opt.type:
            kwargs["type"] = opt.type
        if opt.choice:
            kwargs["type"], kwargs["choices"] = opt.choice, list(opt.choice.values)
        add(opt.flag, **kwargs)
    app_arguments(add)
    for name in BACKENDS:
        backend_class(name).add_arguments(add)


def backend_dests() -> list[str]:
    """dest names of the options the backends declare (to hand them back to the backend)."""
    return list(backend_options())


def backend_options() -> dict[str, tuple[str, set[str], Any]]:
    """dest -> (flag, the backends that declare it, its default)."""
    found: dict[str, tuple[str, set[str], Any]] = {}
    for name in BACKENDS:
        def record(*flags, _backend=name, **kwargs):
            dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
            flag, owners, default = found.get(dest, (flags[0], set(), kwargs.get("default")))
            found[dest] = (flag, owners | {_backend}, default)

        backend_class(name).add_arguments(record)
    return found


@dataclass(frozen=True)
class HarnessOptions:
    stack: str
    balancer: str
    stack_port: int
    api_port: int | None
    levels: list[int]
    stage_time: float
    request_timeout: float
    max_replicas: int
    replace_dead: bool
    run_dir: str
    hostname_field: FieldSpec
    counter_field: FieldSpec
    rate_per_user: float
    load_model: str
    load_profile: str
    arrival_rate: float
    autoscale: str
    autoscale_metric: str
    autoscale_target: float
    min_replicas: int
    autoscale_period: float
    scale_down_window: float
    hpa_tolerance: float
    kpa_stable_window: float
    kpa_panic_threshold: float
    slo_p95_ms: float
    run_time: float | None  # Locust's --run-time: where the plan ends
    min_steady: float
    app_port: int | None
    health_path: str | None
    request_path: str
    counter_read: str | None
    ready_timeout: float | None
    limits: Limits
    faults: list[str]
    host: str | None
    users: int | None
    spawn_rate: float | None
    backend_options: dict = field(default_factory=dict)
    hpa_manifest: str = ""       # absolute, or "": its min/max, metric, target are above
    hpa_behavior: HpaBehavior = field(default_factory=HpaBehavior)  # the manifest's, or defaults
    plan: RunPlan | None = None  # built once, from the rest, by validate

    def to_dict(self) -> dict:
        out = asdict(replace(self, plan=None))
        out.pop("plan")
        out["hostname_field"] = str(self.hostname_field)
        out["counter_field"] = str(self.counter_field)
        out["scale_levels"] = out.pop("levels")
        out["limits"] = self.limits.to_dict()
        return out


def app_is_ours(get, stack: str) -> bool:
    """The hello app (which names its replica and carries the counter), or an app we did
    not write. A URL we do not control is taken to be the hello app, as before."""
    own = {"local": "app_cmd", "compose": "compose_file", "swarm": "swarm_stack_file",
           "kubernetes": "kube_manifests"}
    return stack not in own or not (get(own[stack]) or "").strip()


def parse_levels(text: str) -> list[int]:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise UsageError("--scale-levels is empty: give replica counts like 1,2,4")
    levels = []
    for part in parts:
        if not (part.isascii() and part.isdigit()):
            raise UsageError(
                f"--scale-levels: {part!r} is not a whole number (expected e.g. 1,2,4)")
        if int(part) < 1:
            raise UsageError(f"--scale-levels: {part} replicas is not a scale; use 1 or more")
        levels.append(int(part))
    return levels


def parse_duration(text, option: str = "--stage-time", allow_zero: bool = False) -> float:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        try:
            seconds = plan_seconds(text)
        except DurationTooLong as exc:
            raise UsageError(f"{option}: {short(text)!r} is {exc}") from None
        except (ValueError, TypeError):
            raise UsageError(f"{option}: {short(text)!r} is not a duration (expected e.g. 30s, "
                             "2m, 1m30s)") from None
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise UsageError(f"{option}: {short(text)!r} is longer than {MAX_DURATION_TEXT}, the "
                         "longest a run can hold")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise UsageError(f"{option}: {short(text)!r} must be longer than zero")
    return seconds


def real(value, option: str) -> float:
    """A number option's value as a finite float: Infinity or NaN would reach run.json,
    which is then not JSON."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{option}: {short(value)!r} is not a number") from None
    if not math.isfinite(number):
        raise UsageError(f"{option}: {short(value)!r} is not a finite number")
    return number


def check_writable(run_dir: str, reports: Path = Path("reports")) -> None:
    """Fail now, before anything is created, if the run directory cannot be written."""
    path = Path(run_dir) if run_dir else reports
    if run_dir and path.exists():
        if not path.is_dir():
            raise UsageError(f"--run-dir {run_dir}: exists and is not a directory")
        if any(path.iterdir()):
            raise UsageError(f"--run-dir {run_dir} is not empty; choose a new directory")
    probe_dir = path
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise UsageError(f"--run-dir {run_dir or reports}: {probe_dir} is not a directory")
    try:  # os.access says yes to root on a read-only mount; try for real
        fd, probe = tempfile.mkstemp(prefix=".scalecheck-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = run_dir or str(reports)
        raise UsageError(f"cannot write the run directory {where}: {probe_dir} is not "
                         f"writable ({exc.strerror or exc})") from None


def validate(parsed, check_dir: bool = True, fixed: dict | None = None) -> HarnessOptions:
    """Every option checked, topic by topic; a UsageError names the first bad one; the plan
    built once. ``check_dir``: also prove the run directory can be written (not on workers,
    which never write one). ``fixed``: values that override the parsed ones (the web UI
    cannot change the backend, its port or the run directory of a run already set up)."""
    fixed = fixed or {}

    def get(name: str):
        if name in fixed:
            return fixed[name]
        value = getattr(parsed, name, None)
        return DEFAULTS.get(name, "") if value is None and name in DEFAULTS else value

    stack = _stack(get)
    cls = backend_class(stack["stack"])
    values = {**stack, **_fields(get, stack["stack"], cls), **_locust(get, stack["stack"]),
              **_load(get), **_app(get), **_limits(get)}
    values.update(_levels(get, cls, values))
    values.update(_autoscale(get, cls, values["max_replicas"]))
    options = HarnessOptions(
        **values, replace_dead=bool(get("replace_dead")), run_dir=_run_dir(get, stack["stack"]),
        faults=_fault_list(get("fault") or []),
        backend_options={d: get(d) for d in backend_dests() if hasattr(parsed, d)})
    try:  # the plan and the fault schedule check themselves
        plan = build_plan(options, controlled=cls.controlled)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    _refuse_ignored(get, {**values, "controlled": cls.controlled})  # once every value is good
    _refuse_faults_it_cannot_apply(plan, cls)
    limit = os.environ.get(MAX_RUN_TIME_ENV, "").strip()
    if limit:
        plan = compress(plan, parse_duration(limit, MAX_RUN_TIME_ENV))
    options = replace(options, plan=plan)
    if check_dir:
        check_writable(options.run_dir)
    return options


def _refuse_faults_it_cannot_apply(plan, cls) -> None:
    """A fault the backend has no verb for is refused now, not found out mid-run."""
    for fault in plan.faults:
        needed, what = FAULT_NEEDS.get(fault.kind, (None, ""))
        if needed is not None and not issubclass(cls, needed):
            raise UsageError(f"--fault {fault.text!r}: the {cls.name} stack cannot {what}")


def _stack(get) -> dict:
    stack = STACKS.check(get("stack") or "local", "--stack")
    cls = backend_class(stack)
    balancer = BALANCER_NAMES.check(get("balancer") or "traefik", "--balancer")
    if cls.balancers and balancer not in cls.balancers:
        raise UsageError(f"--balancer {balancer!r}: the {stack} stack offers "
                         f"{' or '.join(cls.balancers)}")
    stack_port, api_port = get("stack_port") or 0, get("api_port") or 0
    if not 0 < stack_port < 65536:
        raise UsageError(f"--stack-port: {stack_port} is not a TCP port")
    if not 0 <= api_port < 65536:
        raise UsageError(f"--api-port: {api_port} is not a TCP port")
    if api_port and api_port == stack_port:
        raise UsageError("--api-port must differ from --stack-port")
    return {"stack": stack, "balancer": balancer, "stack_port": stack_port,
            "api_port": api_port or None}


def _fields(get, stack: str, cls) -> dict:
    ours = app_is_ours(get, stack)
    try:
        hostname_field = FieldSpec.parse(get("hostname_field") or
                                         ("json:hostname" if ours else "balancer"))
        counter_field = FieldSpec.parse(get("counter_field") or
                                        ("json:visits" if ours else "none"))
    except ValueError as exc:
        raise UsageError(f"--hostname-field/--counter-field: {exc}") from None
    if hostname_field.absent:
        raise UsageError("--hostname-field none: the harness needs to know which replica "
                         "served each request")
    if hostname_field.source == "balancer" and not cls.controlled:
        raise UsageError(f"--hostname-field balancer: the {stack} stack's balancer is not the "
                         "harness's; name a field of the app's answers (json:FIELD, "
                         "header:NAME)")
    return {"hostname_field": hostname_field, "counter_field": counter_field}


def _locust(get, stack: str) -> dict:
    """What Locust's own options say: the URL, the users, the spawn rate, the run time."""
    host = get("host") or None
    if host:
        url = urlparse(host)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"-H/--host {host!r} is not an http(s) URL like http://127.0.0.1:4000")
    if stack == "external" and not host:
        raise UsageError("--stack external needs the app's URL: pass -H http://HOST:PORT")
    users, spawn_rate, run_time = get("num_users"), get("spawn_rate"), get("run_time") or None
    if users is not None and users < 0:
        raise UsageError(f"-u/--users {users}: use 0 or more users")
    if spawn_rate is not None:
        spawn_rate = real(spawn_rate, "-r/--spawn-rate")
        if spawn_rate <= 0:
            raise UsageError(f"-r/--spawn-rate {spawn_rate:g}: must be more than 0")
    if run_time is not None:  # Locust's own option, read here: seconds, as Locust parsed it
        if run_time <= 0:
            raise UsageError(f"--run-time {run_time}: must be longer than zero")
        if run_time > MAX_DURATION_S:
            raise UsageError(f"--run-time {short(run_time, 20)} s is longer than "
                             f"{MAX_DURATION_TEXT}, the longest a run can hold")
    return {"host": host, "users": users, "spawn_rate": spawn_rate,
            "run_time": float(run_time) if run_time else None}


def _load(get) -> dict:
    rate_per_user = real(get("rate_per_user") or 0.0, "--rate-per-user")
    if rate_per_user < 0:
        raise UsageError("--rate-per-user must be 0 (as fast as possible) or more")
    load_model = str(get("load_model") or "closed")
    arrival_rate = real(get("arrival_rate") or 0.0, "--arrival-rate")
    if arrival_rate < 0:
        raise UsageError("--arrival-rate must be more than 0")
    if arrival_rate > 0:
        load_model = "open"
    load_model = LOAD_MODEL.check(load_model, "--load-model")
    if load_model == "open" and rate_per_user > 0:
        raise UsageError("--rate-per-user paces users of the closed model; the open model's "
                         "rate is --arrival-rate or --load-profile")
    slo = real(get("slo_p95_ms") or 0.0, "--slo-p95-ms")
    if slo < 0:
        raise UsageError("--slo-p95-ms must be 0 (off) or more")
    return {"rate_per_user": rate_per_user, "load_model": load_model,
            "load_profile": str(get("load_profile") or ""), "arrival_rate": arrival_rate,
            "slo_p95_ms": slo,
            "min_steady": parse_duration(get("min_steady") or "0s", "--min-steady",
                                         allow_zero=True)}


def _levels(get, cls, values: dict) -> dict:
    max_replicas = get("max_replicas") or 0
    if max_replicas < 0:
        raise UsageError("--max-replicas must be 1 or more")
    max_replicas = max_replicas or default_max_replicas()
    levels = parse_levels(get("scale_levels"))
    too_many = [lv for lv in levels if lv > max_replicas]
    autoscaled = str(get("autoscale") or "none") != "none" or bool(get("hpa_manifest"))
    if too_many and cls.controlled and not autoscaled:  # an autoscaler ignores the levels
        raise UsageError(f"--scale-levels: {too_many[0]} replicas is above --max-replicas "
                         f"{max_replicas} (each replica takes ~{REPLICA_MEMORY_MB} MB; raise "
                         "--max-replicas if you mean it)")
    stage_text = str(get("stage_time") or "").strip()
    if stage_text:
        stage_time = parse_duration(stage_text)
    elif values["run_time"]:  # the levels share the run Locust was told to make
        stage_time = values["run_time"] / len(levels)
    else:
        stage_time = parse_duration(DEFAULT_STAGE_TIME)
    timeout_text = str(get("request_timeout") or "").strip()
    request_timeout = parse_duration(timeout_text, "--request-timeout") if timeout_text \
        else min(MAX_DEFAULT_TIMEOUT_S, max(1.0, stage_time / 3))
    return {"levels": levels, "max_replicas": max_replicas, "stage_time": stage_time,
            "request_timeout": request_timeout}


def _autoscale(get, cls, max_replicas: int) -> dict:
    manifest = _hpa_manifest(get)
    if manifest is not None:  # its values stand where the flags' would: one path after
        hpa = manifest[1]
        sets = {"autoscale": "hpa", "autoscale_metric": hpa.metric,
                "autoscale_target": hpa.knobs.target, "min_replicas": hpa.knobs.min_replicas,
                "hpa_tolerance": hpa.knobs.tolerance,
                "scale_down_window": hpa.knobs.scale_down_window}
        get = _overlay(get, sets)
        max_replicas = hpa.knobs.max_replicas
    autoscale = AUTOSCALER.check(get("autoscale") or "none", "--autoscale")
    metric = AUTOSCALE_METRIC.check(get("autoscale_metric") or "rps", "--autoscale-metric")
    target = real(get("autoscale_target") or 0.0, "--autoscale-target")
    min_replicas = int(get("min_replicas") or 0)
    if autoscale == "cluster":
        if manifest is not None:
            raise UsageError("--hpa-manifest is for the simulation (--autoscale hpa); with "
                             "--autoscale cluster the cluster runs the HPA in --kube-manifests")
        return {**_autoscale_defaults(get), "hpa_manifest": "", "max_replicas": max_replicas,
                **_cluster_autoscale(get, metric, target, min_replicas, max_replicas)}
    if autoscale != "none":
        if not cls.controlled:
            raise UsageError(f"--autoscale needs a stack the harness controls, not "
                             f"{get('stack')}")
        if target <= 0:
            raise UsageError("--autoscale-target: give the target value of "
                             f"{metric} per replica (more than 0)")
        if min_replicas < 1:
            raise UsageError("--min-replicas must be 1 or more")
        if autoscale == "kpa" and metric not in ("rps", "inflight"):
            raise UsageError("--autoscale kpa watches rps or inflight (Knative's metrics), "
                             f"not {metric}")
        if min_replicas > max_replicas:
            raise UsageError(f"--min-replicas {min_replicas} is above --max-replicas "
                             f"{max_replicas}")
    return {"autoscale": autoscale, "autoscale_metric": metric, "autoscale_target": target,
            "min_replicas": min_replicas, "max_replicas": max_replicas,
            "hpa_manifest": manifest[0] if manifest else "",
            "hpa_behavior": manifest[1].behavior if manifest else HpaBehavior(),
            **_autoscale_defaults(get)}


def _autoscale_defaults(get) -> dict:
    """The policies' own knobs, checked whichever policy runs."""
    tolerance = real(get("hpa_tolerance"), "--hpa-tolerance")
    if not 0 <= tolerance < 1:
        raise UsageError("--hpa-tolerance must be between 0 and 1")
    panic = real(get("kpa_panic_threshold"), "--kpa-panic-threshold")
    if panic <= 1:
        raise UsageError("--kpa-panic-threshold must be more than 1 (e.g. 2.0 for 200%)")
    stable_window = parse_duration(get("kpa_stable_window"), "--kpa-stable-window")
    if not 6 <= stable_window <= 3600:
        raise UsageError("--kpa-stable-window must be between 6s and 1h (Knative's bounds)")
    return {"hpa_tolerance": tolerance, "kpa_panic_threshold": panic,
            "kpa_stable_window": stable_window,
            "autoscale_period": parse_duration(get("autoscale_period"), "--autoscale-period"),
            "scale_down_window": parse_duration(get("scale_down_window"),
                                                "--scale-down-window", allow_zero=True)}


def _overlay(get, values: dict):
    """``get`` with ``values`` in place of what the user typed for those names."""
    def overlaid(name: str):
        return values[name] if name in values else get(name)
    return overlaid


def _hpa_manifest(get) -> tuple[str, hpa_manifest.HpaManifest] | None:
    """The team's HPA (absolute path, knobs), read now so a file the simulation cannot
    honour is refused before anything starts; None without --hpa-manifest."""
    path = _absolute(get("hpa_manifest"))
    if not path:
        return None
    if str(get("autoscale") or "none") == "kpa":
        raise UsageError("--hpa-manifest describes an HPA: --autoscale kpa cannot follow it "
                         "(leave --autoscale out, or give hpa)")
    try:
        return path, hpa_manifest.read(Path(path))
    except hpa_manifest.ManifestError as exc:
        raise UsageError(str(exc)) from None


def _cluster_autoscale(get, metric: str, target: float, min_replicas: int,
                       max_replicas: int) -> dict:
    """--autoscale cluster: the HPA the cluster will run, as the plan records it (the
    analysis judges against its min, max and target). From the flags, or read from the
    team's manifests, which must then have one for the Deployment."""
    if get("stack") != "kubernetes":
        raise UsageError("--autoscale cluster: only --stack kubernetes has an autoscaler of "
                         "its own (on the others, --autoscale hpa simulates Kubernetes' HPA)")
    out = {"autoscale": "cluster", "autoscale_period": CLUSTER_HPA_SYNC_S}
    if target > 0:
        if metric != "cpu":
            raise UsageError("--autoscale cluster writes an HPA on CPU utilisation only: give "
                             "--autoscale-metric cpu, or put your own HPA in the manifests")
        if min_replicas < 1:
            raise UsageError("--min-replicas must be 1 or more")
        if min_replicas > max_replicas:
            raise UsageError(f"--min-replicas {min_replicas} is above --max-replicas "
                             f"{max_replicas}")
        return {**out, "autoscale_metric": metric, "autoscale_target": target,
                "min_replicas": min_replicas, "hpa_behavior": HpaBehavior()}
    options = declared()
    for dest in ("min_replicas", "max_replicas"):
        if _given(get, dest, options[dest][1]):
            raise UsageError(f"{options[dest][0]} would be ignored: the manifests' HPA sets "
                             "it (or give --autoscale-target for an HPA written from the flags)")
    from loadtest.autoscale.hpa_manifest import ManifestError as HpaError
    from loadtest.autoscale.hpa_manifest import parse as parse_hpa
    from loadtest.stack.kubernetes import sources, workload
    from loadtest.stack.kubernetes.backend import DEFAULT_MANIFESTS
    from loadtest.stack.kubernetes.hpa import scaled_by_the_hpa, team_hpa

    where = str(get("kube_manifests") or "").strip()
    try:
        objects = sources.read(Path(where) if where else DEFAULT_MANIFESTS)
        wanted = get("kube_deployment") or (None if where else "hello")
        name = workload.name_of(workload.deployment(objects, scaled_by_the_hpa(objects, wanted)))
    except sources.ManifestError as exc:
        raise UsageError(str(exc)) from None
    found = team_hpa(objects, name)
    if found is None:
        raise UsageError(f"--autoscale cluster: the manifests have no HorizontalPodAutoscaler "
                         f"for Deployment {name}; add one, or give --autoscale-metric cpu "
                         "--autoscale-target PERCENT --min-replicas N --max-replicas M")
    spec = found.get("spec") or {}
    try:  # the metric and target, where the simulation's reader understands them
        knobs = parse_hpa(found, f"HorizontalPodAutoscaler {workload.name_of(found)}")
        metric, target, behavior = knobs.metric, knobs.knobs.target, knobs.behavior
    except HpaError:
        metric, target, behavior = "other", 0.0, HpaBehavior()
    return {**out, "autoscale_metric": metric, "autoscale_target": target,
            "hpa_behavior": behavior,
            "min_replicas": int(spec.get("minReplicas", 1)),
            "max_replicas": int(spec.get("maxReplicas") or max_replicas)}


def _app(get) -> dict:
    app_port = int(get("app_port") or 0) or None
    if app_port is not None and not 0 < app_port < 65536:
        raise UsageError(f"--app-port: {app_port} is not a TCP port")
    health_path = str(get("health_path") or "").strip() or None
    if health_path is not None and not health_path.startswith("/"):
        raise UsageError(f"--health-path {health_path!r}: a path, starting with / "
                         "(e.g. /healthz)")
    request_path = str(get("request_path") or "/").strip() or "/"
    if not request_path.startswith("/") or any(c.isspace() for c in request_path):
        raise UsageError(f"--request-path {request_path!r}: a path starting with / "
                         "(e.g. /products)")
    counter_read = str(get("counter_read") or "").strip() or None
    if counter_read is not None:
        parts = counter_read.split(":")
        if parts[0] != "redis" or len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"--counter-read {counter_read!r}: expected redis:SERVICE:KEY "
                             "(redis:KEY on the embedded stack)")
    ready = get("ready_timeout")
    return {"app_port": app_port, "health_path": health_path, "request_path": request_path,
            "counter_read": counter_read,
            "ready_timeout": parse_duration(ready, "--ready-timeout") if ready else None}


def _limits(get) -> dict:
    try:
        cpus = parse_cpus(get("replica_cpus")) if get("replica_cpus") else None
        memory = parse_memory(get("replica_memory")) if get("replica_memory") else None
        request = parse_cpus(get("replica_cpu_request")) if get("replica_cpu_request") \
            else None
        return {"limits": Limits(cpus, memory, request)}
    except ValueError as exc:
        raise UsageError(f"--replica-cpus/--replica-memory/--replica-cpu-request: "
                         f"{exc}") from None


# -- options a run would ignore -----------------------------------------------------------

#: What the harness runs on a stack it controls, and cannot on one it does not (external).
RUN_BY_THE_HARNESS = ("scale_levels", "max_replicas", "replace_dead", "replica_cpus",
                      "replica_memory", "replica_cpu_request", "balancer", "stack_port",
                      "api_port", "app_port", "health_path", "ready_timeout", "counter_read")
AUTOSCALER_KNOBS = ("min_replicas", "autoscale_metric", "autoscale_target", "autoscale_period",
                    "scale_down_window", "hpa_tolerance", "kpa_stable_window",
                    "kpa_panic_threshold")
HPA_ONLY = ("autoscale_period", "scale_down_window", "hpa_tolerance")
#: What --hpa-manifest sets from the HPA's own spec.
MANIFEST_SETS = ("autoscale_target", "min_replicas", "max_replicas", "autoscale_metric",
                 "scale_down_window", "hpa_tolerance")
KPA_ONLY = ("kpa_stable_window", "kpa_panic_threshold")


def _one_stage(v: dict) -> bool:
    return v["autoscale"] != "none" or not v["controlled"] or len(v["levels"]) == 1


def _ends(v: dict) -> str:
    return "--run-time" if v["run_time"] else "--load-profile"


#: (the options, when the run would ignore them, why): each refused, naming the conflict,
#: rather than dropped without a word. The facts are the validated values, plus
#: ``controlled`` (the stack is the harness's to run).
IGNORED: tuple[tuple[tuple[str, ...], Any, Any], ...] = (
    (("scale_levels",), lambda v: v["autoscale"] != "none",
     lambda v: f"--autoscale {v['autoscale']} chooses the replica count (from "
               "--min-replicas up to --max-replicas)"),
    (RUN_BY_THE_HARNESS, lambda v: not v["controlled"],
     lambda v: f"the {v['stack']} stack is not the harness's to run or scale"),
    (MANIFEST_SETS, lambda v: bool(v["hpa_manifest"]),
     lambda v: f"--hpa-manifest {v['hpa_manifest']} sets it (the HPA's spec: minReplicas, "
               "maxReplicas, metrics, behavior)"),
    (AUTOSCALER_KNOBS, lambda v: v["autoscale"] == "none",
     lambda v: "it tunes an autoscaler, and none runs (add --autoscale hpa or kpa)"),
    (HPA_ONLY, lambda v: v["autoscale"] == "kpa",
     lambda v: "--autoscale kpa does not read it (it decides every 2 s, over "
               "--kpa-stable-window)"),
    (KPA_ONLY, lambda v: v["autoscale"] == "hpa",
     lambda v: "--autoscale hpa does not read it"),
    (HPA_ONLY + KPA_ONLY, lambda v: v["autoscale"] == "cluster",
     lambda v: "the cluster's HPA has its own (its sync period is the controller "
               "manager's; windows and tolerance go in the HPA's behavior)"),
    (("stage_time",), lambda v: _one_stage(v) and bool(v["run_time"] or v["load_profile"]),
     lambda v: f"the run has one stage, and {_ends(v)} sets its end"),
    (("arrival_rate",), lambda v: _points(v),
     lambda v: "--load-profile gives the rate at each of its points (with --load-model "
               "open they are requests/s)"),
    (("num_users",), lambda v: _points(v) and v["load_model"] == "closed",
     lambda v: "--load-profile gives the users at each of its points (a preset's peak is "
               "-u)"),
)
#: Locust's own options, by the name users know them.
LOCUST_FLAGS = {"num_users": "-u/--users"}


def _points(v: dict) -> bool:
    """A load profile of points (a preset is scaled to -u, or to --arrival-rate)."""
    return bool(v["load_profile"]) and v["load_profile"].strip() not in PRESETS


def _given(get, dest: str, default: Any) -> bool:
    """The user chose a value for ``dest``: it differs from the default (an empty list,
    as the web UI sends one, is the default)."""
    value = get(dest)
    if isinstance(value, list):
        return any(str(v).strip() for v in value) and value != default
    if isinstance(value, str) and isinstance(default, str):
        return value.replace(" ", "") not in ("", default.replace(" ", ""))
    return value is not None and value != "" and value != default


def declared() -> dict[str, tuple[str, Any]]:
    """dest -> (flag, default) of the harness's options and the app's (``app_arguments``),
    Locust's own by the name users know them."""
    found: dict[str, tuple[str, Any]] = {d: (flag, None) for d, flag in LOCUST_FLAGS.items()}
    found.update({opt.dest: (opt.flag, opt.default) for opt in OPTIONS})

    def record(*flags, **kwargs):
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        found[dest] = (flags[0], kwargs.get("default"))

    app_arguments(record)
    return found


def _refuse_ignored(get, facts: dict) -> None:
    """An option this run would ignore is refused, naming the conflict: silently dropped,
    the user would believe it took effect."""
    options = declared()
    for dests, when, why in IGNORED:
        given = [d for d in dests if _given(get, d, options[d][1])]
        if given and when(facts):
            raise UsageError(f"{options[given[0]][0]} would be ignored: {why(facts)}")
    stack = facts["stack"]
    for dest, (flag, owners, default) in backend_options().items():
        if stack not in owners and _given(get, dest, default):
            raise UsageError(f"{flag} would be ignored: it is an option of --stack "
                             f"{' or '.join(sorted(owners))}, and this run is --stack {stack}")


# -- paths -----------------------------------------------------------------------------

def _run_dir(get, stack: str) -> str:
    """The run directory, absolute. Refused: a control character (a newline breaks every
    log and config line it is written into), and under Docker a colon (a bind mount
    ``SOURCE:TARGET`` would split there)."""
    path = _absolute(get("run_dir"))
    bad = next((c for c in path if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UsageError(f"--run-dir {path!r}: contains a control character ({bad!r}); "
                         "choose a path without one")
    if ":" in path and stack in ("compose", "swarm"):
        raise UsageError(f"--run-dir {path!r}: contains a colon, which Docker's bind mounts "
                         f"(SOURCE:TARGET) cannot carry on --stack {stack}; choose a path "
                         "without one")
    return path


def _absolute(path) -> str:
    """A path the user typed, made absolute against the directory the harness was started
    in: Docker, Compose and Swarm each read a relative path differently."""
    text = str(path or "").strip()
    return str(Path(text).expanduser().absolute()) if text else ""


def _fault_list(values) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out = []
    for value in values:
        out.extend(part.strip() for part in str(value).split(",") if part.strip())
    return out
