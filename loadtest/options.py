"""The harness's own Locust options, and their validation.

Options are declared on Locust's parser so they show in the web UI (Locust's
``--help`` is printed before a locustfile loads, so it cannot list them:
``scalecheck options`` does). Values are checked in one place, ``validate``,
which turns bad input into a ``UsageError`` with a one-line message (exit
code 2) before anything is created: no run directory, no process.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import psutil

from loadtest.collector import FieldSpec
from loadtest.plan import seconds as plan_seconds
from loadtest.stack import BACKENDS, REGISTRY, backend_class
from loadtest.stack.base import app_arguments

#: Resident memory of one replica (gunicorn, gthread, 4 threads), measured on the
#: development machine; the default --max-replicas keeps replicas within half the RAM.
REPLICA_MEMORY_MB = 60
MAX_REPLICAS_CAP = 64
LOAD_MODELS = ("closed", "open")
AUTOSCALERS = ("none", "hpa", "kpa")
AUTOSCALE_METRICS = ("rps", "inflight", "cpu", "p95")
DEFAULT_STAGE_TIME = "30s"


class UsageError(Exception):
    """Bad input from the user; the message is one line."""


def default_max_replicas() -> int:
    available = psutil.virtual_memory().available / 2**20
    return max(1, min(MAX_REPLICAS_CAP, int(available * 0.5 // REPLICA_MEMORY_MB)))


def add_arguments(parser) -> None:
    group = parser.add_argument_group("scalecheck", "Stack, plan, load, autoscaler, faults")

    def add(*args, **kwargs):
        # Locust shows an option in its web UI only when the action says so;
        # options added through a group do not get that mark by themselves.
        action = group.add_argument(*args, **kwargs)
        action.include_in_web_ui = True
        return action

    add("--stack", default="local", metavar="BACKEND",
        help=f"Stack under test: {' | '.join(BACKENDS)} (default: local)")
    add("--balancer", default="traefik", metavar="NAME",
        help="Balancer in front of the replicas: traefik | haproxy (default: traefik)")
    add("--stack-port", default=4000, type=int, metavar="PORT",
        help="Port of the balancer on 127.0.0.1 (default: 4000)")
    add("--api-port", default=0, type=int, metavar="PORT",
        help="The balancer's API/dashboard on 127.0.0.1 (default: 8080 if free, else any)")
    add("--scale-levels", default="1,2,4", metavar="N,N,...",
        help="Replica counts, one stage each, in order (default: 1,2,4)")
    add("--stage-time", default="", metavar="TIME",
        help="How long each stage lasts, e.g. 20s, 1m30s (default: Locust's --run-time "
             f"shared among the levels, else {DEFAULT_STAGE_TIME})")
    add("--min-steady", default="0s", metavar="TIME",
        help="Fixed levels: a stage does not end before its replicas served steadily this "
             "long; a slow rescale then moves the later stages back rather than leaving a "
             "level unjudged (default 0s: the plan's times hold)")
    add("--max-replicas", default=0, type=int, metavar="N",
        help="Highest replica count allowed, for levels and the autoscaler (default, or 0: "
             f"what half the free memory holds at ~{REPLICA_MEMORY_MB} MB a replica, at most "
             f"{MAX_REPLICAS_CAP})")
    add("--replace-dead", action="store_true", default=False,
        help="Replace a replica that dies, as an orchestrator would (default: report it only)")
    add("--run-dir", default="", metavar="DIR",
        help="Where to record the run (default: reports/<UTC timestamp>; "
             "reports/latest points at the newest)")
    add("--hostname-field", default="", metavar="SRC:NAME",
        help="Where a response says which replica served it: json:FIELD, header:NAME, or "
             "balancer (the harness's balancer names it; where the app says nothing, it "
             "does anyway) (default: json:hostname for the hello app, balancer for another)")
    add("--counter-field", default="", metavar="SRC:NAME",
        help="Where a response carries the counter value: json:FIELD, header:NAME, or none "
             "if the app has no counter (default: json:visits for the hello app, none for "
             "another)")
    add("--rate-per-user", default=0.0, type=float, metavar="RPS",
        help="Closed model: fixed requests/s per user (Locust's constant_throughput); "
             "0 = as fast as possible (default)")
    add("--load-model", default="closed", metavar="MODEL",
        help="closed: -u users send back to back (Locust's way); open: requests arrive at "
             "a rate whatever the app's speed (default: closed)")
    add("--load-profile", default="", metavar="T:V,...",
        help="Load over time, linear between points, e.g. 0s:50,60s:400,120s:50, or a preset "
             "(ramp, spike, wave); values are req/s (open) or users (closed); the run ends at "
             "the last point")
    add("--arrival-rate", default=0.0, type=float, metavar="RPS",
        help="Shorthand for --load-model open at a constant rate (default 0: not used)")
    add("--autoscale", default="none", metavar="POLICY",
        help="Let an autoscaler choose the replica count: none | hpa | kpa (default: none)")
    add("--autoscale-metric", default="rps", metavar="METRIC",
        help="What the autoscaler watches, per replica: rps | inflight | cpu | p95 "
             "(default: rps)")
    add("--autoscale-target", default=0.0, type=float, metavar="VALUE",
        help="Target value of the metric per replica (rps, requests in flight, CPU %% of "
             "one core, or p95 ms)")
    add("--min-replicas", default=1, type=int, metavar="N",
        help="Autoscaler: fewest replicas (default: 1)")
    add("--autoscale-period", default="15s", metavar="TIME",
        help="Autoscaler: how often it decides (HPA's sync period; default 15s; KPA ticks "
             "every 2s)")
    add("--scale-down-window", default="300s", metavar="TIME",
        help="HPA: scale-down stabilisation window (default 300s); KPA: its stable window "
             "is --kpa-stable-window")
    add("--hpa-tolerance", default=0.1, type=float, metavar="RATIO",
        help="HPA: no change while metric/target is within 1 +/- this (default 0.1)")
    add("--kpa-stable-window", default="60s", metavar="TIME",
        help="KPA: stable window (default 60s; the panic window is 10%% of it)")
    add("--kpa-panic-threshold", default=2.0, type=float, metavar="RATIO",
        help="KPA: enter panic when desired/ready reaches this (default 2.0 = 200%%)")
    add("--slo-p95-ms", default=0.0, type=float, metavar="MS",
        help="The latency objective the autoscaling section judges against (p95, ms)")
    add("--fault", action="append", default=[], metavar="WHEN:KIND[:ARGS]",
        help="Inject a fault, e.g. 30s:kill-replica, 45s:pause-redis:5s, 60s:restart-redis, "
             "70s:latency:redis:50ms:10s (repeat, or separate with commas)")
    app_arguments(add)
    for name in BACKENDS:
        backend_class(name).add_arguments(add)


@dataclass(frozen=True)
class HarnessOptions:
    stack: str
    balancer: str
    stack_port: int
    api_port: int | None
    levels: list[int]
    stage_time: float
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
    counter_read: str | None
    ready_timeout: float | None
    faults: list[str]
    host: str | None
    users: int | None
    spawn_rate: float | None
    backend_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hostname_field"] = str(self.hostname_field)
        out["counter_field"] = str(self.counter_field)
        out["scale_levels"] = out.pop("levels")
        return out


def app_is_ours(parsed, stack: str) -> bool:
    """The hello app (which names its replica and carries the counter), or an app we did
    not write. A URL we do not control is taken to be the hello app, as before."""
    if stack == "local":
        return not (getattr(parsed, "app_cmd", "") or "").strip()
    if stack == "compose":
        return not (getattr(parsed, "compose_file", "") or "").strip()
    if stack == "swarm":
        return not (getattr(parsed, "swarm_stack_file", "") or "").strip()
    return True


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
        except (ValueError, TypeError):
            raise UsageError(
                f"{option}: {text!r} is not a duration (expected e.g. 30s, 2m, 1m30s)") from None
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise UsageError(f"{option}: {text!r} must be longer than zero")
    return seconds


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


def validate(parsed, check_dir: bool = True) -> HarnessOptions:
    """Every option checked; a UsageError names the first bad one.

    ``check_dir``: also prove the run directory can be written (not on workers,
    which never write one)."""
    stack = getattr(parsed, "stack", "local")
    if stack not in REGISTRY:
        raise UsageError(f"--stack: unknown backend {stack!r}; choose {', '.join(BACKENDS)}")
    cls = backend_class(stack)
    balancer = str(getattr(parsed, "balancer", "traefik") or "traefik")
    if cls.balancers and balancer not in cls.balancers:
        raise UsageError(f"--balancer {balancer!r}: the {stack} stack offers "
                         f"{' or '.join(cls.balancers)}")
    for option in ("stack_port", "api_port"):
        port = getattr(parsed, option, 0) or 0
        if option == "stack_port" and not 0 < port < 65536 or not 0 <= port < 65536:
            raise UsageError(f"--{option.replace('_', '-')}: {port} is not a TCP port")
    api_port = getattr(parsed, "api_port", 0) or None
    if api_port is not None and api_port == parsed.stack_port:
        raise UsageError("--api-port must differ from --stack-port")
    if parsed.rate_per_user < 0:
        raise UsageError("--rate-per-user must be 0 (as fast as possible) or more")
    ours = app_is_ours(parsed, stack)
    try:
        hostname_field = FieldSpec.parse(getattr(parsed, "hostname_field", "") or
                                         ("json:hostname" if ours else "balancer"))
        counter_field = FieldSpec.parse(getattr(parsed, "counter_field", "") or
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
    host = getattr(parsed, "host", None) or None
    if host:
        url = urlparse(host)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"-H/--host {host!r} is not an http(s) URL like http://127.0.0.1:4000")
    if stack == "external" and not host:
        raise UsageError("--stack external needs the app's URL: pass -H http://HOST:PORT")
    users = getattr(parsed, "num_users", None)
    if users is not None and users < 0:
        raise UsageError(f"-u/--users {users}: use 0 or more users")
    spawn_rate = getattr(parsed, "spawn_rate", None)
    if spawn_rate is not None and spawn_rate <= 0:
        raise UsageError(f"-r/--spawn-rate {spawn_rate}: must be more than 0")
    max_replicas = getattr(parsed, "max_replicas", 0) or 0
    if max_replicas < 0:
        raise UsageError("--max-replicas must be 1 or more")
    max_replicas = max_replicas or default_max_replicas()
    levels = parse_levels(parsed.scale_levels)
    too_many = [lv for lv in levels if lv > max_replicas]
    autoscaled = str(getattr(parsed, "autoscale", "none") or "none") != "none"
    if too_many and cls.controlled and not autoscaled:  # an autoscaler ignores the levels
        raise UsageError(f"--scale-levels: {too_many[0]} replicas is above --max-replicas "
                         f"{max_replicas} (each replica takes ~{REPLICA_MEMORY_MB} MB; raise "
                         "--max-replicas if you mean it)")
    load_model = str(getattr(parsed, "load_model", "closed") or "closed")
    arrival_rate = float(getattr(parsed, "arrival_rate", 0.0) or 0.0)
    if arrival_rate < 0:
        raise UsageError("--arrival-rate must be more than 0")
    if arrival_rate > 0:
        load_model = "open"
    if load_model not in LOAD_MODELS:
        raise UsageError(f"--load-model {load_model!r}: choose closed or open")
    if load_model == "open" and parsed.rate_per_user > 0:
        raise UsageError("--rate-per-user paces users of the closed model; the open model's "
                         "rate is --arrival-rate or --load-profile")
    autoscale = str(getattr(parsed, "autoscale", "none") or "none")
    if autoscale not in AUTOSCALERS:
        raise UsageError(f"--autoscale {autoscale!r}: choose {', '.join(AUTOSCALERS)}")
    metric = str(getattr(parsed, "autoscale_metric", "rps") or "rps")
    if metric not in AUTOSCALE_METRICS:
        raise UsageError(f"--autoscale-metric {metric!r}: choose "
                         f"{', '.join(AUTOSCALE_METRICS)}")
    target = float(getattr(parsed, "autoscale_target", 0.0) or 0.0)
    min_replicas = int(getattr(parsed, "min_replicas", 1) or 0)
    if autoscale != "none":
        if not cls.controlled:
            raise UsageError(f"--autoscale needs a stack the harness controls, not {stack}")
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
    tolerance = float(getattr(parsed, "hpa_tolerance", 0.1))
    if not 0 <= tolerance < 1:
        raise UsageError("--hpa-tolerance must be between 0 and 1")
    panic = float(getattr(parsed, "kpa_panic_threshold", 2.0))
    if panic <= 1:
        raise UsageError("--kpa-panic-threshold must be more than 1 (e.g. 2.0 for 200%)")
    stable_window = parse_duration(getattr(parsed, "kpa_stable_window", "60s"),
                                   "--kpa-stable-window")
    if not 6 <= stable_window <= 3600:
        raise UsageError("--kpa-stable-window must be between 6s and 1h (Knative's bounds)")
    slo = float(getattr(parsed, "slo_p95_ms", 0.0) or 0.0)
    if slo < 0:
        raise UsageError("--slo-p95-ms must be 0 (off) or more")
    faults = _fault_list(getattr(parsed, "fault", []) or [])
    app_port = int(getattr(parsed, "app_port", 0) or 0) or None
    if app_port is not None and not 0 < app_port < 65536:
        raise UsageError(f"--app-port: {app_port} is not a TCP port")
    health_path = str(getattr(parsed, "health_path", "") or "").strip() or None
    if health_path is not None and not health_path.startswith("/"):
        raise UsageError(f"--health-path {health_path!r}: a path, starting with / "
                         "(e.g. /healthz)")
    counter_read = str(getattr(parsed, "counter_read", "") or "").strip() or None
    if counter_read is not None:
        parts = counter_read.split(":")
        if parts[0] != "redis" or len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"--counter-read {counter_read!r}: expected redis:SERVICE:KEY "
                             "(redis:KEY on the embedded stack)")
    run_time = getattr(parsed, "run_time", None) or None
    if run_time is not None and run_time <= 0:
        raise UsageError(f"--run-time {run_time}: must be longer than zero")
    stage_text = str(getattr(parsed, "stage_time", "") or "").strip()
    if stage_text:
        stage_time = parse_duration(stage_text)
    elif run_time:  # the levels share the run Locust was told to make
        stage_time = float(run_time) / len(levels)
    else:
        stage_time = parse_duration(DEFAULT_STAGE_TIME)
    backend_options = {}
    for dest in _backend_dests():
        if hasattr(parsed, dest):
            backend_options[dest] = getattr(parsed, dest)
    options = HarnessOptions(
        stack=stack, balancer=balancer, stack_port=parsed.stack_port, api_port=api_port,
        levels=levels, stage_time=stage_time,
        max_replicas=max_replicas, replace_dead=bool(getattr(parsed, "replace_dead", False)),
        run_dir=parsed.run_dir, hostname_field=hostname_field, counter_field=counter_field,
        rate_per_user=parsed.rate_per_user, load_model=load_model,
        load_profile=str(getattr(parsed, "load_profile", "") or ""),
        arrival_rate=arrival_rate, autoscale=autoscale, autoscale_metric=metric,
        autoscale_target=target, min_replicas=min_replicas,
        autoscale_period=parse_duration(getattr(parsed, "autoscale_period", "15s"),
                                        "--autoscale-period"),
        scale_down_window=parse_duration(getattr(parsed, "scale_down_window", "300s"),
                                         "--scale-down-window", allow_zero=True),
        hpa_tolerance=tolerance,
        kpa_stable_window=stable_window,
        kpa_panic_threshold=panic, slo_p95_ms=slo, run_time=float(run_time) if run_time else None,
        min_steady=parse_duration(getattr(parsed, "min_steady", "0s") or "0s", "--min-steady",
                                  allow_zero=True),
        app_port=app_port, health_path=health_path, counter_read=counter_read,
        ready_timeout=parse_duration(parsed.ready_timeout, "--ready-timeout")
        if getattr(parsed, "ready_timeout", "") else None, faults=faults,
        host=host, users=users,
        spawn_rate=spawn_rate, backend_options=backend_options,
    )
    # The plan and the fault schedule check themselves; their errors are usage errors too.
    from loadtest.plan import PlanError, build_plan

    try:
        build_plan(options)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    if check_dir:
        check_writable(options.run_dir)
    return options


def _fault_list(values) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out = []
    for value in values:
        out.extend(part.strip() for part in str(value).split(",") if part.strip())
    return out


def _backend_dests() -> list[str]:
    """dest names of the options the backends declare (to hand them back to the backend)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    for name in BACKENDS:
        backend_class(name).add_arguments(parser.add_argument)
    return [a.dest for a in parser._actions]
