"""Every checker, in the order the report lists their checks, run each made safe.

Importing the checker modules registers them (``checks.checker``); this module is the one
place that knows them all, so that no checker module imports another (the checkers' old
cycle through ``verdict``).
"""

from __future__ import annotations

from loadtest.analysis import bottleneck, compare, state_checks, verdict  # noqa: F401 - register
from loadtest.analysis.checks import CHECKERS, Check, Checker, judged
from loadtest.analysis.findings import Findings
from loadtest.analysis.thresholds import Thresholds

ORDER = ("run", "records", "counter", "load", "stalled", "scaling", "stack", "transition",
         "fault", "autoscaling", "regression", "state")


def ordered() -> dict[str, Checker]:
    return {name: CHECKERS[name] for name in (*ORDER, *sorted(set(CHECKERS) - set(ORDER)))}


def check_all(findings: Findings, thresholds: Thresholds,
              checkers: dict[str, Checker] | None = None) -> list[Check]:
    """Every checker's checks, each made safe: an exception becomes one check, not
    checked, with the exception as evidence (Jepsen's ``check-safe``)."""
    out: list[Check] = []
    for name, fn in (checkers or ordered()).items():
        try:
            out.extend(fn(findings, thresholds))
        except Exception as exc:  # noqa: BLE001 - one broken checker must not hide the rest
            out.append(judged(name, None, detail=f"the {name} checker", evidence={
                "exception": f"{type(exc).__name__}: {exc}"[:500]},
                reason=f"the checker failed: {type(exc).__name__}: {exc}"[:300]))
    return out
