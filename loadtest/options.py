"""The harness's own Locust options, and their validation.

Options are declared on Locust's parser so they show in ``locust --help`` and
in the web UI. Values are checked in one place, ``validate``, which turns bad
input into a ``UsageError`` with a one-line message (exit code 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from locust.util.timespan import parse_timespan

from loadtest.collector import FieldSpec
from loadtest.stack import BACKENDS


class UsageError(Exception):
    """Bad input from the user; the message is one line."""


def add_arguments(parser) -> None:
    group = parser.add_argument_group("scalecheck", "Scale levels, stack and recording")

    def add(*args, **kwargs):
        # Locust shows an option in its web UI only when the action says so;
        # options added through a group do not get that mark by themselves.
        action = group.add_argument(*args, **kwargs)
        action.include_in_web_ui = True
        return action

    add("--stack", default="local", metavar="BACKEND",
                       help=f"Stack under test: {' | '.join(BACKENDS)} (default: local)")
    add("--scale-levels", default="1,2,4", metavar="N,N,...",
                       help="Replica counts, one stage each, in order (default: 1,2,4)")
    add("--stage-time", default="30s", metavar="TIME",
                       help="How long each stage lasts, e.g. 20s, 1m30s (default: 30s)")
    add("--run-dir", default="", metavar="DIR",
                       help="Where to record the run (default: reports/<UTC timestamp>; "
                            "reports/latest points at the newest)")
    add("--stack-port", default=4000, type=int, metavar="PORT",
                       help="Port of the balancer on 127.0.0.1 for local/compose (default: 4000)")
    add("--compose-file", default="", metavar="FILE",
                       help="--stack compose: the Compose file (default: "
                            "compose/docker-compose-scale.yml, Traefik)")
    add("--compose-service", default="hello", metavar="NAME",
                       help="--stack compose: the service to scale (default: hello)")
    add("--hostname-field", default="json:hostname", metavar="SRC:NAME",
                       help="Where a response says which replica served it: json:FIELD or "
                            "header:NAME (default: json:hostname)")
    add("--counter-field", default="json:visits", metavar="SRC:NAME",
                       help="Where a response carries the counter value: json:FIELD or "
                            "header:NAME (default: json:visits)")
    add("--rate-per-user", default=0.0, type=float, metavar="RPS",
                       help="Fixed requests/s per user (Locust's constant_throughput), so levels "
                            "compare at equal offered load; 0 = as fast as possible (default)")


@dataclass(frozen=True)
class HarnessOptions:
    stack: str
    levels: list[int]
    stage_time: float
    run_dir: str
    stack_port: int
    hostname_field: FieldSpec
    counter_field: FieldSpec
    rate_per_user: float
    compose_file: str = ""
    compose_service: str = "hello"

    def to_dict(self) -> dict:
        return {
            "stack": self.stack, "scale_levels": self.levels, "stage_time": self.stage_time,
            "run_dir": self.run_dir, "stack_port": self.stack_port,
            "hostname_field": str(self.hostname_field), "counter_field": str(self.counter_field),
            "rate_per_user": self.rate_per_user, "compose_file": self.compose_file,
            "compose_service": self.compose_service,
        }


def parse_levels(text: str) -> list[int]:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise UsageError("--scale-levels is empty: give replica counts like 1,2,4")
    levels = []
    for part in parts:
        if not part.isdigit():
            raise UsageError(
                f"--scale-levels: {part!r} is not a whole number (expected e.g. 1,2,4)")
        if int(part) < 1:
            raise UsageError(f"--scale-levels: {part} replicas is not a scale; use 1 or more")
        levels.append(int(part))
    return levels


def parse_duration(text: str, option: str = "--stage-time") -> float:
    try:
        seconds = parse_timespan(str(text))
    except (ValueError, TypeError):
        raise UsageError(
            f"{option}: {text!r} is not a duration (expected e.g. 30s, 2m, 1m30s)") from None
    if seconds <= 0:
        raise UsageError(f"{option}: {text!r} must be longer than zero")
    return float(seconds)


def validate(parsed) -> HarnessOptions:
    if parsed.stack not in BACKENDS:
        raise UsageError(f"--stack: unknown backend {parsed.stack!r}; choose {', '.join(BACKENDS)}")
    if not 0 < parsed.stack_port < 65536:
        raise UsageError(f"--stack-port: {parsed.stack_port} is not a TCP port")
    if parsed.rate_per_user < 0:
        raise UsageError("--rate-per-user must be 0 (as fast as possible) or more")
    try:
        hostname_field = FieldSpec.parse(parsed.hostname_field)
        counter_field = FieldSpec.parse(parsed.counter_field)
    except ValueError as exc:
        raise UsageError(f"--hostname-field/--counter-field: {exc}") from None
    return HarnessOptions(
        stack=parsed.stack,
        levels=parse_levels(parsed.scale_levels),
        stage_time=parse_duration(parsed.stage_time),
        run_dir=parsed.run_dir,
        stack_port=parsed.stack_port,
        hostname_field=hostname_field,
        counter_field=counter_field,
        rate_per_user=parsed.rate_per_user,
        compose_file=getattr(parsed, "compose_file", ""),
        compose_service=getattr(parsed, "compose_service", "hello"),
    )
