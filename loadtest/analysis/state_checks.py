"""Did the app's shared state stay correct? The state checkers over one history, and their
checks for the verdict.

``state_findings`` feeds one history (sorted by ``t_start``) once through every checker:
registers (linearizability, session guarantees), sets, login sessions. ``state_checks``
turns those findings into named checks: a model with no operation in the run is not
applicable; a checker that could not decide is *not checked*, with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from loadtest.analysis.history import LOGIN_FS, REGISTER_FS, SET_FS, Op
from loadtest.analysis.linearizable import DEFAULT_BUDGET_S, DEFAULT_MAX_STATES, RegisterChecker
from loadtest.analysis.sessions import LoginSessions, SessionGuarantees
from loadtest.analysis.setcheck import SetChecker
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.verdict import Check, not_applicable

SHOWN = 5  # examples per check in its evidence


class StateCheckers:
    """Every state checker over one history fed in ``t_start`` order, one op at a time.

    ``initial``: what a read of a key never written sees; ``max_states``, ``budget_s``:
    the linearizability search's bounds per key (thresholds ``linearizable_max_states``,
    ``linearizable_budget_s``); ``margin``: clock disagreement between load generators, s
    (``clock_skew_ms`` / 1000 when several machines generate load)."""

    def __init__(self, *, initial: object = None, max_states: float = DEFAULT_MAX_STATES,
                 budget_s: float = DEFAULT_BUDGET_S, margin: float = 0.0) -> None:
        self.options = {"initial": initial, "max_states": max_states, "budget_s": budget_s,
                        "margin": margin}
        self.counts = {"register": 0, "set": 0, "login": 0, "other": 0}
        self.register = self.guarantees = self.sets = self.logins = None

    def feed(self, op: Op) -> None:
        if self.register is None:
            o, t0 = self.options, op.t_start
            self.register = RegisterChecker(initial=o["initial"], max_states=o["max_states"],
                                            budget_s=o["budget_s"], margin=o["margin"], t0=t0)
            self.guarantees = SessionGuarantees(initial=o["initial"], margin=o["margin"],
                                                t0=t0)
            self.sets, self.logins = SetChecker(t0), LoginSessions(t0)
        if op.f in REGISTER_FS:
            self.counts["register"] += 1
            self.register.feed(op)
            self.guarantees.feed(op)
        elif op.f in SET_FS:
            self.counts["set"] += 1
            self.sets.feed(op)
        elif op.f in LOGIN_FS:
            self.counts["login"] += 1
            self.logins.feed(op)
        else:
            self.counts["other"] += 1

    def result(self) -> dict:
        if self.register is None:
            initial = self.options["initial"]
            self.register, self.guarantees = (RegisterChecker(initial=initial),
                                              SessionGuarantees())
            self.sets, self.logins = SetChecker(), LoginSessions()
        return {"ops": dict(self.counts), "register": self.register.result(),
                "session_guarantees": self.guarantees.result(), "sets": self.sets.result(),
                "login_sessions": self.logins.result()}


def state_findings(ops: Iterable[Op], **options) -> dict:
    """Every state checker over one history sorted by ``t_start``, in one pass."""
    checkers = StateCheckers(**options)
    for op in ops:
        checkers.feed(op)
    return checkers.result()


def state_checks(findings: dict, t: Thresholds) -> list[Check]:
    """One check per model of shared state (see the module's docstring). ``findings``: the
    analysis' findings (their ``state``), or the state findings themselves."""
    findings = findings.get("state", findings) or {}
    counts = findings.get("ops", {})
    out = []
    reg = findings.get("register") or {}
    name, detail = ("register_linearizable",
                    "every key behaved as one register: each read is explained by an order "
                    "of the operations within their real spans (Wing & Gong search)")
    if not counts.get("register"):
        out.append(not_applicable(name, "the run made no register operation", detail))
    else:
        reason = reg.get("reason", "")
        if reg.get("keys_not_checked"):
            reason += (f" (bounds per key: {t.linearizable_max_states:,.0f} configurations, "
                       f"{t.linearizable_budget_s:g} s)")
        out.append(Check(name, reg.get("valid"), reg.get("keys_invalid"), 0, detail,
                         {"keys": reg.get("keys"), "ops": reg.get("ops"),
                          "unknown": reg.get("unknown"),
                          "violations": reg.get("violations", [])[:SHOWN],
                          "not_checked": reg.get("not_checked", [])[:SHOWN]},
                         reason=reason if reg.get("valid") is None else ""))
    sets = findings.get("sets") or {}
    for name, value, examples, detail in (
        ("set_lost", sets.get("lost"), sets.get("lost_examples", []),
         "elements known to be in a set (acknowledged, or read) that went missing for good"),
        ("set_unexpected", (sets.get("unexpected") or 0) + (sets.get("duplicates") or 0),
         sets.get("unexpected_examples", [])[:SHOWN] + sets.get("duplicate_examples", []),
         "elements read that were never added, or read more often than added"),
        ("set_stale", sets.get("stale_reads"), sets.get("stale_examples", []),
         "reads that missed an element known before they began, which came back later"),
    ):
        if not counts.get("set"):
            out.append(not_applicable(name, "the run made no set operation", detail))
            continue
        evidence = {"examples": examples[:SHOWN]}
        if name == "set_stale":
            evidence["by_replica"] = sets.get("stale_by_replica", {})
        out.append(_count_check(name, value, sets.get("valid"), sets.get("reason", ""),
                                detail, evidence))
    guarantees = findings.get("session_guarantees") or {}
    for key, detail in (
        ("read_your_writes", "a process's reads never return a version older than its own "
                             "last acknowledged write"),
        ("monotonic_reads", "a process's reads never go back to an older version"),
        ("monotonic_writes", "no process sees one writer's writes out of its order"),
        ("writes_follow_reads", "a write made after reading v is never seen before v"),
    ):
        name = f"session_{key}"
        if not counts.get("register"):
            out.append(not_applicable(name, "the run made no register operation", detail))
            continue
        g = guarantees.get(key) or {}
        out.append(Check(name, g.get("valid"), g.get("violations"), 0, detail,
                         {"judged": g.get("judged"), "by_replica": g.get("by_replica", {}),
                          "examples": g.get("examples", [])[:SHOWN]},
                         reason=g.get("reason", "") if g.get("valid") is None else ""))
    logins = findings.get("login_sessions") or {}
    detail = "after a login, every replica that answered knew the user"
    if not counts.get("login"):
        out.append(not_applicable("sessions_honoured", "the run made no login", detail))
    else:
        out.append(Check("sessions_honoured", logins.get("valid"), logins.get("violations"), 0,
                         detail, {"judged": logins.get("judged"),
                                  "by_replica": logins.get("by_replica", {}),
                                  "examples": logins.get("examples", [])[:SHOWN]},
                         reason=logins.get("reason", "") if logins.get("valid") is None
                         else ""))
    return out


def _count_check(name: str, value: int | None, valid: bool | None, reason: str, detail: str,
                 evidence: dict) -> Check:
    """A count that must be 0; when the checker could not decide, not checked, unless this
    count already shows a violation."""
    if value:
        return Check(name, False, value, 0, detail, evidence)
    if valid is None:
        return Check(name, None, value, 0, detail, evidence, reason=reason)
    return Check(name, True, value or 0, 0, detail, evidence)
