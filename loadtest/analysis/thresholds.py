"""Thresholds of the verdict: defaults, then ``[tool.scalecheck.thresholds]`` in the
project's pyproject.toml, then the command line, each overriding the one before."""

from __future__ import annotations

import ast
import functools
import math
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

from loadtest.contract.events import TRANSITION_LEAD_S, TRANSITION_MARGIN_S

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float = 0.01
    """Highest error rate of any steady segment (faults and scale changes are judged apart)."""
    max_stalled_requests: int = 0
    """Most requests that may wait out the request timeout, or the run's end, with no
    answer (a hung replica stalls the load generator's users)."""
    max_unknown_rate: float = 0.01
    """Highest share of unknown outcomes (no counter value came back) of any steady segment."""
    min_jain: float = 0.90
    """Lowest Jain fairness index of a segment with 2+ replicas, on what the policy balances."""
    max_cv: float | None = None
    """Highest coefficient of variation of per-replica rates (off by default)."""
    min_chi2_p: float | None = None
    """Lowest chi-square p-value against the expected split (off by default)."""
    max_p99_ms: float | None = None
    """Highest p99 latency of any steady segment, ms (off by default)."""
    min_scaling_efficiency: float | None = None
    """Lowest scaling efficiency of any replica count against the first (off by default)."""
    clock_skew_ms: float = 10.0
    """Margin for real-time order between records of different processes."""
    transition_margin_s: float = TRANSITION_MARGIN_S
    """How long after 'ready' a scale change still counts as transition."""
    transition_lead_s: float = TRANSITION_LEAD_S
    """Scale changes: requests that started this long before a change was asked are
    judged with it (they were in flight when it struck), not with the level before."""
    max_transition_error_rate: float | None = 0.0
    """Scale changes: highest share of requests cut (errors or unknown outcomes) from the
    moment a change is asked until it is ready plus transition_margin_s; none by default
    (``off`` for a stack known to cut)."""
    min_segment_s: float = 1.0
    """Segments shorter than this are reported but not judged (too short to mean much)."""
    max_recovery_s: float | None = 30.0
    """Faults: longest time to recover after a fault ends (never recovering fails)."""
    max_fault_error_rate: float | None = None
    """Faults: highest error rate from a fault's start until it settled (off by default)."""
    fault_settle_s: float = 5.0
    """Faults: how long after a fault ends its effects are judged with it, not as steady."""
    fault_lead_s: float = 1.0
    """Faults: requests that started this long before a fault are judged with it (they
    were still in flight when it struck), not with the steady stretch before."""
    fault_p95_margin: float = 1.5
    """Faults: recovered once p95 is within this factor of its level before the fault."""
    slo_p95_ms: float | None = None
    """Autoscaling: the latency objective (default: --slo-p95-ms of the run, if any)."""
    capacity_per_replica: float | None = None
    """Autoscaling: req/s one replica can serve (default: the rps target, or measured)."""
    max_time_to_scale_s: float | None = None
    """Autoscaling: longest time from a rise of load to the replicas it needs (off)."""
    max_slo_violation_s: float | None = None
    """Autoscaling: most seconds with p95 above the SLO (off by default)."""
    max_flaps: float | None = 0
    """Autoscaling: most scale changes reversed within flap_window_s."""
    flap_window_s: float | None = None
    """Autoscaling: a change undone within this many seconds is a flap (default: two of
    the autoscaler's periods)."""
    max_rps_drop: float = 0.25
    """With --baseline: largest allowed relative drop of a level's requests/s."""
    max_p99_increase: float = 0.50
    """With --baseline: largest allowed relative rise of a level's p99 latency."""
    bottleneck_limit_share: float = 0.9
    """Bottleneck: a replica is near its CPU limit at this share of it (mean over a level)."""
    bottleneck_throttled_share: float = 0.1
    """Bottleneck: a replica throttled by its CPU limit this share of the time is limited."""
    bottleneck_core_share: float = 0.9
    """Bottleneck: the load generator (per Locust process), the store or the balancer (per
    thread) is near a whole core at this share of one (a process or thread uses one)."""
    bottleneck_idle_share: float = 0.05
    """Bottleneck: the machine is saturated when idle at most this share of its cores."""
    max_p50_increase: float | None = 0.50
    """With --baseline: largest allowed relative rise of a level's p50 latency."""
    linearizable_max_states: float = 1_000_000
    """Shared state: most configurations the linearizability search explores for one key;
    a key that needs more reads not checked."""
    linearizable_budget_s: float = 10.0
    """Shared state: most seconds the linearizability search spends on one key; a key that
    needs longer reads not checked."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def doc(cls, name: str) -> str:
        """The docstring under a field (read once from this file, for --help)."""
        return _field_docs().get(name, "")


@functools.lru_cache(maxsize=1)
def _field_docs() -> dict[str, str]:
    tree = ast.parse(Path(__file__).read_text())
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef)
                and n.name == "Thresholds").body
    out = {}
    for field_node, doc in zip(body, body[1:]):
        if isinstance(field_node, ast.AnnAssign) and isinstance(doc, ast.Expr) and \
                isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
            out[field_node.target.id] = " ".join(doc.value.value.split())
    return out


class ThresholdError(Exception):
    pass


def from_pyproject(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ThresholdError(f"{path}: does not parse as TOML ({exc})") from None
    table = data.get("tool", {}).get("scalecheck", {}).get("thresholds", {})
    unknown = set(table) - set(Thresholds.names())
    if unknown:
        raise ThresholdError(f"{path}: unknown threshold(s) in [tool.scalecheck.thresholds]: "
                             f"{', '.join(sorted(unknown))}")
    return table


#: Thresholds that are shares (0 to 1): a rate, an index, a p-value, a relative drop.
SHARES = {"max_error_rate", "max_unknown_rate", "min_jain", "min_chi2_p", "max_rps_drop",
          "max_fault_error_rate", "max_transition_error_rate"}


def can_be_off(name: str) -> bool:
    """Only the thresholds whose default may be None can be turned off."""
    kind = {f.name: f.type for f in fields(Thresholds)}[name]
    return "None" in str(kind)


def resolve(cli: dict, pyproject: Path | None = Path("pyproject.toml"),
            required: bool = False) -> Thresholds:
    """Defaults, then the pyproject table, then the command line. ``required``: the file
    was named by the user, so its absence is an error, not a default."""
    if required and pyproject is not None and not pyproject.is_file():
        raise ThresholdError(f"--config {pyproject}: no such file")
    values = from_pyproject(pyproject) if pyproject else {}
    values.update({k: v for k, v in cli.items() if v is not None})
    out = {}
    for key, value in values.items():
        if value == "off" or value is False:
            if not can_be_off(key):
                raise ThresholdError(f"{key} cannot be turned off (give a number)")
            out[key] = None
            continue
        if isinstance(value, bool):
            raise ThresholdError(f"bad threshold value for {key}: {value!r} (a number, or off)")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ThresholdError(f"bad threshold value for {key}: {value!r} (a number, or "
                                 "off)") from None
        if not math.isfinite(number) or number < 0:
            raise ThresholdError(f"bad threshold value for {key}: {value!r} (a finite number, "
                                 "0 or more)")
        if (key in SHARES or key.endswith("_share")) and number > 1:
            raise ThresholdError(f"bad threshold value for {key}: {value!r} (a share, between "
                                 "0 and 1)")
        out[key] = number
    return replace(Thresholds(), **out)
