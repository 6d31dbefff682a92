"""Did the app's shared state stay correct? The state checkers over one history, and their
checks for the verdict.

``state_findings`` feeds one history (sorted by ``t_start``) once through every checker:
registers (linearizability, session guarantees), sets, counters, lists, login sessions.
``state_checks`` turns those findings into named checks: a model with no operation in
the run is not applicable; a check that had nothing to judge, or whose checker could not
decide, is *not checked*, with its reason; never a pass.
"""

from __future__ import annotations

from collections.abc import Iterable

from loadtest.analysis.addcounter import CounterChecker
from loadtest.analysis.checks import Check, checker, judged, not_applicable
from loadtest.analysis.findings import Findings
from loadtest.analysis.history import COUNTER_FS, LIST_FS, LOGIN_FS, REGISTER_FS, SET_FS, Op
from loadtest.analysis.linearizable import DEFAULT_BUDGET_S, DEFAULT_MAX_STATES, RegisterChecker
from loadtest.analysis.listcheck import ListChecker
from loadtest.analysis.sessions import LoginSessions, SessionGuarantees
from loadtest.analysis.setcheck import NOTHING_AFTER_KNOWN, SetChecker
from loadtest.analysis.thresholds import Thresholds

SHOWN = 5  # examples per check in its evidence
MODELS = ("register", "set", "counter", "list", "login")


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
        self.counts = {**{m: 0 for m in MODELS}, "other": 0}
        self.started = False
        self._start(None)

    def _start(self, t0: float | None) -> None:
        o = self.options
        self.register = RegisterChecker(initial=o["initial"], max_states=o["max_states"],
                                        budget_s=o["budget_s"], margin=o["margin"], t0=t0)
        self.guarantees = SessionGuarantees(initial=o["initial"], margin=o["margin"], t0=t0)
        self.sets, self.logins = SetChecker(t0), LoginSessions(t0)
        self.counters, self.lists = CounterChecker(t0=t0), ListChecker(t0)

    def feed(self, op: Op) -> None:
        if not self.started:  # times in the evidence count from the first operation
            self.started = True
            self._start(op.t_start)
        if op.f in REGISTER_FS:
            self.counts["register"] += 1
            self.register.feed(op)
            self.guarantees.feed(op)
        elif op.f in SET_FS:
            self.counts["set"] += 1
            self.sets.feed(op)
        elif op.f in COUNTER_FS:
            self.counts["counter"] += 1
            self.counters.feed(op)
        elif op.f in LIST_FS:
            self.counts["list"] += 1
            self.lists.feed(op)
        elif op.f in LOGIN_FS:
            self.counts["login"] += 1
            self.logins.feed(op)
        else:
            self.counts["other"] += 1

    def result(self) -> dict:
        return {"ops": dict(self.counts), "register": self.register.result(),
                "session_guarantees": self.guarantees.result(), "sets": self.sets.result(),
                "counters": self.counters.result(), "lists": self.lists.result(),
                "login_sessions": self.logins.result()}


def state_findings(ops: Iterable[Op], **options) -> dict:
    """Every state checker over one history sorted by ``t_start``, in one pass."""
    checkers = StateCheckers(**options)
    for op in ops:
        checkers.feed(op)
    return checkers.result()


def state_checks(findings: dict, t: Thresholds) -> list[Check]:
    """One check per property of each model of shared state (see the module's
    docstring). ``findings``: the analysis' findings (their ``state``), or the state
    findings themselves."""
    findings = findings.get("state", findings) or {}
    counts = findings.get("ops", {})
    return [*_register(findings, counts, t), *_sets(findings, counts),
            *_guarantees(findings, counts), *_counters(findings, counts),
            *_lists(findings, counts), *_logins(findings, counts)]


def _register(findings: dict, counts: dict, t: Thresholds) -> list[Check]:
    reg = findings.get("register") or {}
    name, detail = ("register_linearizable",
                    "every key behaved as one register: each read is explained by an order "
                    "of the operations within their real spans (Wing & Gong search)")
    if not counts.get("register"):
        return [not_applicable(name, "the run made no register operation", detail)]
    reason = reg.get("reason", "")
    if reg.get("keys_not_checked"):
        reason += (f" (bounds per key: {t.linearizable_max_states:,.0f} configurations, "
                   f"{t.linearizable_budget_s:g} s)")
    return [judged(name, reg.get("valid"), reg.get("keys_invalid"), 0, detail,
                  {"keys": reg.get("keys"), "ops": reg.get("ops"),
                   "unknown": reg.get("unknown"),
                   "keys_failed": [v["key"] for v in reg.get("violations", [])],
                   "violations": reg.get("violations", [])[:SHOWN],
                   "not_checked": reg.get("not_checked", [])[:SHOWN]},
                  reason=reason if reg.get("valid") is None else "")]


def _sets(findings: dict, counts: dict) -> list[Check]:
    sets = findings.get("sets") or {}
    detail_of = {
        "set_lost": "elements known to be in a set (acknowledged, or read) that went "
                    "missing for good",
        "set_unexpected": "elements read that were never added, or read more often than "
                          "added",
        "set_stale": "reads that missed an element known before they began, which came "
                     "back later",
    }
    if not counts.get("set"):
        return [not_applicable(name, "the run made no set operation", detail)
                for name, detail in detail_of.items()]
    # Lost and stale judge the reads that began after an element was known (older
    # summaries lack the count: what their checker said stands).
    after_known = sets.get("judged_after_known", 1)
    unjudged = sets.get("reason", "") if sets.get("valid") is None else ""
    by_replica = sets.get("stale_by_replica", {})
    return [
        _count_check("set_lost", sets.get("lost"), unjudged or (
            NOTHING_AFTER_KNOWN if not after_known else ""), detail_of["set_lost"],
            {"judged": after_known, "examples": sets.get("lost_examples", [])[:SHOWN]}),
        _count_check("set_unexpected",
                     (sets.get("unexpected") or 0) + (sets.get("duplicates") or 0),
                     unjudged if unjudged != NOTHING_AFTER_KNOWN else "",
                     detail_of["set_unexpected"],
                     {"examples": (sets.get("unexpected_examples", [])[:SHOWN]
                                   + sets.get("duplicate_examples", []))[:SHOWN]}),
        _count_check("set_stale", sets.get("stale_reads"), unjudged or (
            NOTHING_AFTER_KNOWN if not after_known else ""), detail_of["set_stale"],
            {"judged": after_known, "by_replica": by_replica,
             "misses": sets.get("stale_misses"),
             "counted": "reads: each stale read once, under the replica that served it "
                        "(misses: element and read pairs)",
             "examples": sets.get("stale_examples", [])[:SHOWN]}),
    ]


def _guarantees(findings: dict, counts: dict) -> list[Check]:
    guarantees = findings.get("session_guarantees") or {}
    out = []
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
        out.append(judged(name, g.get("valid"), g.get("violations"), 0, detail,
                         {"judged": g.get("judged"), "by_replica": g.get("by_replica", {}),
                          "examples": g.get("examples", [])[:SHOWN]},
                         reason=g.get("reason", "") if g.get("valid") is None else ""))
    return out


def _counters(findings: dict, counts: dict) -> list[Check]:
    found = findings.get("counters") or {}
    out = []
    for key, detail in (
        ("lost", "no counter read below what the adds acknowledged before it began make "
                 "(an acknowledged add lost)"),
        ("extra", "no counter read above what every add begun by its end could make (an "
                  "add counted twice)"),
    ):
        name = f"add_counter_{key}"
        if not counts.get("counter"):
            out.append(not_applicable(name, "the run made no counter operation", detail))
            continue
        entry = found.get(key) or {}
        out.append(_judged_check(name, entry, detail, {
            "judged": entry.get("judged"), "keys_failed": found.get("keys_failed", []),
            "by_replica": entry.get("by_replica", {}),
            "examples": entry.get("examples", [])[:SHOWN]}))
    return out


def _lists(findings: dict, counts: dict) -> list[Check]:
    found = findings.get("lists") or {}
    out = []
    for key, detail in (
        ("lost", "elements known to be in a list (acknowledged, or read) that went missing "
                 "for good"),
        ("duplicated", "elements read more often than they were appended, or never "
                       "appended"),
        ("reordered", "reads that are not a prefix of one order: elements in the other "
                      "order, or missing from between others"),
        ("stale", "reads that missed an element known before they began, which came back "
                  "later"),
    ):
        name = f"list_{key}"
        if not counts.get("list"):
            out.append(not_applicable(name, "the run made no list operation", detail))
            continue
        entry = found.get(key) or {}
        evidence = {k: v for k, v in entry.items()
                    if k not in ("valid", "reason", "violations", "examples")}
        evidence["examples"] = entry.get("examples", [])[:SHOWN]
        out.append(_judged_check(name, entry, detail, evidence))
    return out


def _logins(findings: dict, counts: dict) -> list[Check]:
    logins = findings.get("login_sessions") or {}
    detail = "after a login, every replica that answered knew the user"
    if not counts.get("login"):
        return [not_applicable("sessions_honoured", "the run made no login", detail)]
    return [judged("sessions_honoured", logins.get("valid"), logins.get("violations"), 0,
                  detail, {"judged": logins.get("judged"),
                           "by_replica": logins.get("by_replica", {}),
                           "examples": logins.get("examples", [])[:SHOWN]},
                  reason=logins.get("reason", "") if logins.get("valid") is None else "")]


def _judged_check(name: str, entry: dict, detail: str, evidence: dict) -> Check:
    """A checker's ``{"valid", "violations", "reason"}`` as a check."""
    return judged(name, entry.get("valid"), entry.get("violations"), 0, detail, evidence,
                 reason=entry.get("reason", "") if entry.get("valid") is None else "")


def _count_check(name: str, value: int | None, unjudged: str, detail: str,
                 evidence: dict) -> Check:
    """A count that must be 0; *not checked* with ``unjudged`` (why nothing could be
    judged), unless this count already shows a violation."""
    if value:
        return judged(name, False, value, 0, detail, evidence)
    if unjudged:
        return judged(name, None, value, 0, detail, evidence, reason=unjudged)
    return judged(name, True, value or 0, 0, detail, evidence)


@checker("state")
def shared_state_checks(f: Findings, t: Thresholds) -> list[Check]:
    """Registers, sets, counters, lists, session guarantees and logins (``loadtest.ops``),
    Jepsen-style."""
    return state_checks(f.state, t)
