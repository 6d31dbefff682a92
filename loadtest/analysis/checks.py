"""The one check protocol: what a check is, how checkers are registered, how a verdict is
composed, as Jepsen composes its checkers.

A ``Check`` has one ``Status``: *pass*, *fail*, *not checked* (it applies, but could not
be made: never read as a pass) or *not applicable* (it does not concern this run: no
counter by design, no faults scheduled, a check the user accepted with
``--allow-unchecked``). A checker is a function ``(findings, thresholds) -> list[Check]``
registered by name with ``@checker``; ``checkers.check_all`` runs them all, each made
safe: a checker that raises gives one check *not checked*, with the exception as
evidence (Jepsen's ``check-safe``).

The verdict: ``fail`` if any check failed; else ``inconclusive`` if any applicable check
could not be made; else ``pass``. An unknown never reads as valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the types of a checker's parameters, for readers and type checkers
    from loadtest.analysis.findings import Findings
    from loadtest.analysis.thresholds import Thresholds

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
EXIT_CODES = {PASS: 0, FAIL: 1, INCONCLUSIVE: 3}


class Status(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    NOT_CHECKED = "not checked"
    NOT_APPLICABLE = "not applicable"

    def __str__(self) -> str:
        return self.value


@dataclass
class Check:
    name: str
    status: Status
    value: object = None
    threshold: object = None
    detail: str = ""             # what it means
    evidence: dict = field(default_factory=dict)
    reason: str = ""             # why not checked / not applicable, or what failed

    @property
    def passed(self) -> bool | None:
        """True, False, or None when it could not be made or does not apply."""
        return {Status.PASS: True, Status.FAIL: False}.get(self.status)

    @property
    def applicable(self) -> bool:
        return self.status is not Status.NOT_APPLICABLE

    def to_dict(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value
        # Derived, kept for the readers of summary.json's checks (schema_version 3).
        out["passed"], out["applicable"] = self.passed, self.applicable
        return out


def judged(name: str, passed: bool | None, value: object = None, threshold: object = None,
           detail: str = "", evidence: dict | None = None, reason: str = "") -> Check:
    """A check that applies: it held (True), it did not (False), or it could not be made
    (None: *not checked*, with ``reason``)."""
    status = Status.NOT_CHECKED if passed is None else \
        Status.PASS if passed else Status.FAIL
    return Check(name, status, value, threshold, detail, evidence or {}, reason)


def at_most(name, value, limit, detail="", reason="", **evidence) -> Check:
    return judged(name, None if value is None else value <= limit, value, limit, detail,
                  evidence, reason=reason if value is None else "")


def at_least(name, value, limit, detail="", reason="", **evidence) -> Check:
    return judged(name, None if value is None else value >= limit, value, limit, detail,
                  evidence, reason=reason if value is None else "")


def not_applicable(name: str, reason: str, detail: str = "") -> Check:
    return Check(name, Status.NOT_APPLICABLE, detail=detail, reason=reason)


def compose(checks: list[Check]) -> str:
    if any(c.status is Status.FAIL for c in checks):
        return FAIL
    if any(c.status is Status.NOT_CHECKED for c in checks):
        return INCONCLUSIVE
    return PASS


def accept_unchecked(checks: list[Check], names: set[str]) -> list[str]:
    """``--allow-unchecked``: these checks, if they could not be made, do not apply.
    Returns the names that matched no check (to warn about typos)."""
    known = {c.name for c in checks}
    for check in checks:
        if check.name in names and check.status is Status.NOT_CHECKED:
            check.status = Status.NOT_APPLICABLE
            check.reason = (check.reason + "; " if check.reason else "") + \
                "accepted as not applicable (--allow-unchecked)"
    return sorted(names - known)


# -- checkers, by name ------------------------------------------------------------------

Checker = Callable[["Findings", "Thresholds"], list[Check]]
#: Every checker, by name, in the order the report lists their checks.
CHECKERS: dict[str, Checker] = {}


def checker(name: str) -> Callable[[Checker], Checker]:
    """Register a checker under ``name`` (its topic)."""
    def register(fn: Checker) -> Checker:
        CHECKERS[name] = fn
        return fn
    return register
