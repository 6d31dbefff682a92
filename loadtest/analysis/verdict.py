"""The checkers of the run, its load, its replicas, its scale changes, its faults and its
autoscaler (those of shared state, of a baseline and of the bottleneck live beside their
own findings: ``state_checks``, ``compare``, ``bottleneck``). Each is a ``checks.checker``:
``(findings, thresholds) -> list[Check]``, registered by name; ``checkers`` runs them.
"""

from __future__ import annotations

import math

from loadtest.analysis.checks import Check, at_least, at_most, checker, judged, not_applicable
from loadtest.analysis.faults import HOLD_S
from loadtest.analysis.findings import Findings
from loadtest.analysis.thresholds import Thresholds
from loadtest.analysis.windows import fault_span

# -- the checks ----------------------------------------------------------------------

COUNTER = [
    ("counter_duplicates", "duplicates", "a value handed out twice"),
    ("counter_unexpected", "unexpected", "values outside (before, before+ok+unknown]"),
    ("counter_gaps", "unexplained_gaps",
     "missing values no unknown request could have produced in real time"),
    ("counter_lost_increments", "lost", "after < before + ok"),
    ("counter_unexplained_increments", "unexplained_increments",
     "after > before + ok + unknown"),
    ("counter_final_below_returned", "final_below_returned",
     "the final counter is below a value already returned"),
    ("counter_real_time_order", "order_violations", "a later request saw a lower value"),
    ("counter_per_user_order", "user_violations", "one user's values did not increase"),
]
_NEEDS = {"duplicates": "duplicates", "unexpected": "unexpected", "unexplained_gaps": "gaps",
          "lost": "reconciliation", "unexplained_increments": "reconciliation",
          "final_below_returned": "final", "order_violations": "order",
          "user_violations": "user_order"}


@checker("run")
def run_checks(f: Findings, t: Thresholds) -> list[Check]:
    run, bad_parts = f.run, f.bad_parts
    status = run.get("status")
    missing = run.get("stages_missing") or []
    ok = status == "completed" and not missing
    why = f"the run's status is {status!r}" if status != "completed" else \
        f"{len(missing)} planned stage(s) never ran"
    out = [judged("run_completed", True if ok else None, status, "completed",
                 "the run followed its plan to the end", {"stages_missing": missing},
                 reason="" if ok else why + (f": {run.get('error')}" if run.get("error") else ""))]
    if bad_parts:
        out.append(judged("records_readable", None, len(bad_parts), 0,
                         "every record file could be read", {"bad_parts": bad_parts[:20]},
                         reason=f"{len(bad_parts)} record file(s) skipped (--skip-bad-parts)"))
    return out


@checker("records")
def records_checks(f: Findings, t: Thresholds) -> list[Check]:
    return [records_check(f.totals)]


def records_check(totals: dict) -> Check:
    """Locust's count, the collector's and the rows this analysis read must all agree: a
    record file lost from the run directory is as blinding as one never written."""
    locust = totals.get("locust")
    recorded = totals.get("recorded")
    analysed = totals.get("analysed", recorded)
    detail = "every request Locust counted has a record, and every record was read"
    evidence = {"locust": locust, "recorded": recorded, "analysed": analysed,
                "lost": records_lost(totals)}
    if totals.get("bad_parts"):
        return judged("records_complete", None, analysed, locust, detail, evidence,
                     reason="some record files were skipped")
    if locust is not None and recorded != locust:
        lost = evidence["lost"]
        return judged("records_complete", False, recorded, locust, detail, evidence,
                     reason=f"{lost:,} of the {locust:,} requests Locust counted have no "
                            "record" if lost else
                            f"{recorded - locust:,} more records than requests Locust counted")
    if analysed != recorded:
        return judged("records_complete", None, analysed, recorded, detail, evidence,
                     reason=f"run.json says {recorded} requests were recorded but the run "
                            f"directory holds {analysed}: record files are missing")
    return judged("records_complete", None if locust is None else True, recorded, locust,
                 detail, evidence,
                 reason="Locust's count is not known" + (f" ({totals['note']})"
                                                         if totals.get("note") else "")
                 if locust is None else "")


def records_lost(totals: dict) -> int:
    """Requests Locust counted that have no record (0 when that is not known)."""
    locust, recorded = totals.get("locust"), totals.get("recorded")
    if locust is None or recorded is None:
        return 0
    return max(0, int(locust) - int(recorded))


def records_incomplete(totals: dict) -> bool:
    """Some records are not in this analysis: the counter's history has holes."""
    return bool(totals.get("bad_parts")) or \
        totals.get("analysed", totals.get("recorded")) != totals.get("recorded")


#: Checks that need every record: with some records skipped they cannot be made.
NEEDS_ALL_RECORDS = {"unexpected", "unexplained_gaps", "lost", "unexplained_increments"}


@checker("counter")
def counter_checks(f: Findings, t: Thresholds) -> list[Check]:
    c, counter_absent = f.consistency, f.counter_absent
    incomplete = records_incomplete(f.totals)
    out = []
    for name, key, why in COUNTER:
        if counter_absent:
            out.append(not_applicable(name, "the app has no counter (--counter-field none)",
                                      why))
            continue
        if incomplete and key in NEEDS_ALL_RECORDS:
            out.append(judged(name, None, c.get(key), 0, why,
                             reason="some record files were skipped: the history is "
                                    "incomplete"))
            continue
        unchecked = _NEEDS[key] in c.get("not_checked", [])
        if unchecked:
            reason = ("no counter value came back" if c.get("ok", 0) == 0 else
                      "the counter could not be read before and after the run"
                      if _NEEDS[key] in ("reconciliation", "final", "unexpected") else "")
            out.append(judged(name, None, None, 0, why, reason=reason))
        else:
            evidence = {}
            if key == "duplicates" and c.get("examples", {}).get("duplicates"):
                evidence["examples"] = c["examples"]["duplicates"][:5]
            if key == "order_violations" and c.get("examples", {}).get("order"):
                evidence["examples"] = c["examples"]["order"][:5]
            out.append(at_most(name, c[key], 0, why, **evidence))
    return out


def judged_segments(segments: list[dict], t: Thresholds) -> list[dict]:
    """Segments long enough to judge, and not disturbed by a fault."""
    return [s for s in segments if s["seconds"] >= t.min_segment_s and not s["faults"]
            and s["requests"]]


@checker("load")
def load_checks(f: Findings, t: Thresholds) -> list[Check]:
    """Errors, unknown outcomes, spread and coverage over the steady segments.
    ``planned_levels``: the replica counts a fixed plan asked for; each must have had a
    steady segment judged, or the run says nothing about it."""
    planned_levels = f.planned_levels
    steady = judged_segments(f.segments, t)
    out = []
    if planned_levels:
        seen = {s["level"] for s in steady}
        unjudged = sorted(set(planned_levels) - seen)
        out.append(judged("levels_judged", None if unjudged else True,
                         len(set(planned_levels)) - len(unjudged), len(set(planned_levels)),
                         "every planned replica count held steady long enough to be judged",
                         {"unjudged": unjudged},
                         reason=f"replica count(s) {', '.join(map(str, unjudged))} never held "
                                f"steady for {t.min_segment_s:g} s with requests and no fault "
                                "or scale change" if unjudged else ""))
    worst = max(steady, key=lambda s: s["error_rate"], default=None)
    out.append(at_most("error_rate", worst["error_rate"] if worst else None, t.max_error_rate,
                       "worst steady segment (faults and scale changes judged apart)",
                       reason="no steady segment to judge", segment=_where(worst),
                       errors_by_replica=_by_replica(worst, "errors")))
    worst = max(steady, key=lambda s: s["unknown_rate"], default=None)
    out.append(at_most("unknown_rate", worst["unknown_rate"] if worst else None,
                       t.max_unknown_rate,
                       "worst steady segment: requests with no counter value (unknown outcome)",
                       reason="no steady segment to judge", segment=_where(worst)))
    multi = [s for s in steady if s["level"] >= 2]
    jains = [s for s in multi if s["fairness"]["jain"] is not None]
    low = min(jains, key=lambda s: s["fairness"]["jain"], default=None)
    if not multi:
        out.append(not_applicable("fairness_jain", "no steady segment with 2+ replicas",
                                  "spread over replicas, as the policy balances"))
    else:
        out.append(at_least("fairness_jain", low["fairness"]["jain"] if low else None,
                            t.min_jain, f"lowest over segments with 2+ replicas, judged on "
                            f"{multi[0]['judged_on']} ({multi[0]['policy']})",
                            reason="no replica named itself", segment=_where(low)))
    named = [s for s in steady if any(s["hostnames"].values())]
    uncovered = sorted({h for s in named for h in s["uncovered"]})
    out.append(at_most("coverage_uncovered_replicas", len(uncovered) if named else None, 0,
                       "replicas in service that got no request",
                       reason="no replica named itself" if steady else "nothing to judge",
                       replicas=uncovered))
    if t.max_cv is not None:
        cvs = [s["fairness"]["cv"] for s in multi if s["fairness"]["cv"] is not None]
        out.append(at_most("fairness_cv", max(cvs) if cvs else None, t.max_cv))
    if t.min_chi2_p is not None:
        ps = [s["fairness"]["chi2_p"] for s in multi if s["fairness"]["chi2_p"] is not None]
        out.append(at_least("fairness_chi2_p", min(ps) if ps else None, t.min_chi2_p))
    if t.max_p99_ms is not None:
        p99s = [s["latency_ms"]["p99"] for s in steady if s["latency_ms"]["p99"] is not None]
        out.append(at_most("latency_p99_ms", max(p99s) if p99s else None, t.max_p99_ms))
    return out


@checker("stack")
def stack_checks(f: Findings, t: Thresholds) -> list[Check]:
    """``known_replicas``: every replica the stack ever reported; one of them answering
    after it left is ``served_after_removal``'s to judge, a name never reported is a
    stray."""
    changes, deaths, controlled = f.changes, f.deaths, f.controlled
    expect, answered, known = f.expect_replicas, f.answered, f.known_replicas
    steady = judged_segments(f.segments, t)
    out = []
    if controlled:
        stray = sorted({h for seg in steady or [] for h in seg.get("unexpected_hostnames", [])
                        if h not in known})
        # A run.json that names no replica at all (cut short, or emptied) cannot tell a
        # stray from a replica it never wrote down: that proves nothing.
        out.append(at_most("unexpected_replicas", len(stray) if known else None, 0,
                           "replicas that answered but that the stack never reported (another "
                           "app on the port?)", replicas=stray,
                           reason="run.json names no replica the stack started"))
        late = sum(r["served_after_removal"] for r in changes["removed"])
        out.append(at_most("served_after_removal", late, 0,
                           "requests routed to a replica after it was removed"))
        unplanned = [d for d in deaths if not d.get("planned")]
        out.append(at_most("replicas_died", len(unplanned), 0,
                           "replicas that stopped on their own (not by a scheduled fault)",
                           replicas=[d["hostname"] for d in unplanned]))
    elif expect:
        out.append(judged("replicas_expected", len(answered) == expect, len(answered), expect,
                         "replicas that answered, against --expect-replicas",
                         {"answered": answered}))
    else:
        out.append(not_applicable("replicas_expected", "--stack external without "
                                  "--expect-replicas: how many should answer is not known"))
    return out


@checker("transition")
def transition_checks(f: Findings, t: Thresholds) -> list[Check]:
    """Every scale change, from the moment it was asked until it was ready plus the margin:
    the requests cut there, against ``max_transition_error_rate``. Cut is what a change
    can do to a request: no answer, a 5xx (the balancer's 502/503/504 among them), an
    unknown outcome, the balancer's own 4xx; the app's own 4xx answers (a 409 to a
    conflicting write) are the app answering, reported apart and never cut. A change a
    fault caused or overlaps is judged with that fault (its errors are the fault's); a
    change that could not be observed to its end (never ready, or too close to the end of
    the run) is not checked."""
    transitions, faults, t_max, t0 = f.transitions, f.faults, f.t_max, f.t_min
    name = "transition_errors"
    detail = ("requests cut while a scale change was under way (asked → ready + margin): "
              "no answer, 5xx, unknown outcomes; the app's own 4xx are counted apart")
    if not transitions:
        return []
    if t.max_transition_error_rate is None:
        return [not_applicable(name, "max_transition_error_rate is off", detail)]
    changes, worst, failed, unchecked = [], None, 0, 0
    for tr in transitions:
        entry = _change_evidence(tr, t0)
        fault = next((f for f in faults if f["applied"] is not None
                      and _overlaps(tr, f, t)), None)
        rate = tr["cut"] / tr["requests"] if tr["requests"] else None
        if fault is not None:
            entry["status"] = "judged with its fault"
            entry["fault"] = fault["spec"] or fault["kind"]
            entry["note"] = (f"its {tr['cut']} cut request(s) are counted with fault "
                             f"{fault['index']} ({entry['fault']})")
        elif rate is not None and rate > t.max_transition_error_rate:
            entry["status"] = "fail"
            failed += 1
        elif tr["t_ready"] is None or tr.get("failed"):
            entry["status"] = "not checked"
            entry["note"] = "the change never got ready"
            unchecked += 1
        elif tr["t_ready"] + t.transition_margin_s > t_max:
            entry["status"] = "not checked"
            entry["note"] = (f"the run ended {max(0.0, t_max - tr['t_ready']):.1f} s after the "
                             f"change was ready, before its {t.transition_margin_s:g} s margin")
            unchecked += 1
        elif not tr["requests"]:
            entry["status"] = "not checked"
            entry["note"] = "no request was sent while it was under way"
            unchecked += 1
        else:
            entry["status"] = "pass"
        if fault is None and rate is not None and (worst is None or rate > worst):
            worst = rate
        changes.append(entry)
    made = [c for c in changes if c["status"] in ("pass", "fail")]
    evidence = {"changes": changes[:50], "shown": min(len(changes), 50),
                "total": len(changes)}
    if failed:
        bad = [c for c in changes if c["status"] == "fail"]
        return [judged(name, False, round(worst, 6), t.max_transition_error_rate, detail,
                      evidence, reason="; ".join(_change_line(c) for c in bad[:5]))]
    if unchecked:
        return [judged(name, None, None if worst is None else round(worst, 6),
                      t.max_transition_error_rate, detail, evidence,
                      reason="; ".join(f"{c['change']} ({c['by']}): {c['note']}"
                                       for c in changes if c["status"] == "not checked"))]
    if not made:
        return [not_applicable(name, "every scale change was judged with a fault", detail)]
    return [judged(name, True, round(worst or 0.0, 6), t.max_transition_error_rate, detail,
                  evidence)]


def _overlaps(tr: dict, fault: dict, t: Thresholds) -> bool:
    recovery = fault.get("recovery_s")
    start, end = fault_span(fault, t.fault_lead_s,
                            max(t.fault_settle_s, recovery if recovery is not None else 0.0))
    return tr["t_start"] < end and tr["t_end"] > start


def _change_evidence(tr: dict, t0: float) -> dict:
    by_replica = {h: r["errors"] for h, r in tr["per_replica"].items() if r["errors"]}
    if tr.get("unnamed_errors"):
        by_replica["the balancer itself"] = tr["unnamed_errors"]
    # Summaries written before the app's 4xx were told apart: every error was cut.
    cut_by = {h: r.get("cut", r["errors"]) for h, r in tr["per_replica"].items()
              if r.get("cut", r["errors"])}
    if tr.get("unnamed_cut", tr.get("unnamed_errors")):
        cut_by["the balancer itself"] = tr.get("unnamed_cut", tr.get("unnamed_errors"))
    out = {"index": tr["index"], "change": f"{tr['previous']} → {tr['level']}",
           "by": tr["by"], "asked_s": round(tr["t_start"] - t0, 3),
           "ready_after_s": tr["ready_after_s"], "requests": tr["requests"],
           "cut": tr["cut"], "errors": tr["errors"], "unknown": tr["unknown"],
           "app_4xx": tr.get("app_4xx", 0),
           "errors_by_kind": tr["errors_by_kind"],
           "cut_by_kind": tr.get("cut_by_kind", tr["errors_by_kind"]),
           "errors_by_replica": by_replica, "cut_by_replica": cut_by}
    if tr.get("cut_first_t") is not None:
        out["first_cut_after_s"] = round(tr["cut_first_t"] - tr["t_start"], 3)
        out["last_cut_after_s"] = round(tr["cut_last_t"] - tr["t_start"], 3)
    return out


def _change_line(c: dict) -> str:
    kinds = ", ".join(f"{n} × {k}" for k, n in sorted(c["cut_by_kind"].items()))
    where = ", ".join(f"{h}: {n}" for h, n in c["cut_by_replica"].items())
    text = f"{c['change']} ({c['by']}, asked at {c['asked_s']:.1f} s): {c['cut']} of " \
        f"{c['requests']} requests cut"
    if kinds:
        text += f" ({kinds})"
    if where:
        text += f" by {where}"
    if "first_cut_after_s" in c:
        text += f", started {c['first_cut_after_s']:+.2f} s to {c['last_cut_after_s']:+.2f} s " \
            "from the ask"
        if c["first_cut_after_s"] < 0:
            text += " (those before it were in flight when it struck)"
    if c.get("app_4xx"):
        text += f"; the app's own {c['app_4xx']} answer(s) 4xx not counted as cut"
    return text


@checker("fault")
def fault_checks(f: Findings, t: Thresholds) -> list[Check]:
    faults = f.faults
    if not faults:
        return []
    out = []
    unapplied = [f for f in faults if f["applied"] is None]
    out.append(judged("faults_applied", None if unapplied else True, len(faults) - len(unapplied),
                     len(faults), "every scheduled fault was applied",
                     {"not_applied": [f"{f['spec']}: {f['failed']}" for f in unapplied]},
                     reason=f"{len(unapplied)} fault(s) could not be applied" if unapplied
                     else ""))
    applied = [f for f in faults if f["applied"] is not None]
    if t.max_recovery_s is not None and applied:
        never = [f for f in applied if f["recovery_s"] is None]
        # Not recovered within the threshold although the run went on long enough: a
        # failure. The run ended sooner: nobody can tell.
        seen_long = [f for f in never
                     if f.get("observed_after_s", math.inf) >= t.max_recovery_s + HOLD_S]
        worst = max((f["recovery_s"] for f in applied if f["recovery_s"] is not None),
                    default=None)
        if seen_long:
            out.append(judged("fault_recovery_s", False, None, t.max_recovery_s,
                             "time to recover after each fault",
                             {"never_recovered": [f["spec"] for f in seen_long]}))
        elif never:
            out.append(judged("fault_recovery_s", None, worst, t.max_recovery_s,
                             "time to recover after each fault",
                             {"too_soon": [f["spec"] for f in never]},
                             reason="the run ended too soon after "
                                    f"{', '.join(f['spec'] or '?' for f in never)} to see a "
                                    "recovery"))
        else:
            out.append(at_most("fault_recovery_s", worst, t.max_recovery_s,
                               "longest time to recover after a fault"))
    if t.max_fault_error_rate is not None and applied:
        worst = max(applied, key=lambda f: f["error_rate"])
        out.append(at_most("fault_error_rate", worst["error_rate"], t.max_fault_error_rate,
                           "worst error rate while a fault was in effect and settling",
                           fault=worst["spec"]))
    return out


@checker("autoscaling")
def autoscaling_checks(f: Findings, t: Thresholds) -> list[Check]:
    a = f.autoscaling
    if a is None:
        return []
    out = []
    if t.max_time_to_scale_s is not None:
        value, limit = a["max_time_to_scale_s"], t.max_time_to_scale_s
        open_s = a.get("longest_open_rise_s")
        detail = "longest time from a rise of load to the replicas it needed"
        if a.get("capacity_per_replica") is None:
            out.append(judged("time_to_scale_s", None, None, limit, detail,
                             reason="the capacity per replica is not known "
                                    "(--capacity-per-replica)"))
        elif open_s is not None and open_s > limit:  # already longer than allowed
            out.append(judged("time_to_scale_s", False, open_s, limit, detail,
                             {"unmet_at_end": True}))
        elif value is not None and value > limit:
            out.append(judged("time_to_scale_s", False, value, limit, detail))
        elif open_s is not None:
            out.append(judged("time_to_scale_s", None, value, limit, detail,
                             reason=f"a rise of load was still unmet {open_s:g} s later "
                                    "when the run ended"))
        else:
            out.append(at_most("time_to_scale_s", value, limit, detail))
    if t.max_slo_violation_s is not None:
        out.append(at_most("slo_violation_s", a["slo_violation_s"], t.max_slo_violation_s,
                           "seconds with p95 above the SLO",
                           reason="no SLO given (--slo-p95-ms)"))
    if t.max_flaps is not None:
        out.append(at_most("autoscaler_flaps", a["flaps"], t.max_flaps,
                           f"scale changes reversed within {a['flap_window_s']:g} s",
                           examples=a["flap_examples"][:5]))
    return out


@checker("stalled")
def stalled_checks(f: Findings, t: Thresholds) -> list[Check]:
    """Requests that got no answer within the request timeout, or were still waiting when
    the run stopped: a hung replica holds the load generator's users, and the answers that
    do come back say nothing of it."""
    s = f.stalled
    detail = "requests that waited out the request timeout, or the end of the run"
    if s is None:
        return [not_applicable("requests_stalled", "the run records no such count", detail)]
    value = s["count"]
    reason = ""
    if value:
        where = ", ".join(f"{name} {n:,}" for name, n in list(s["by_replica"].items())[:5])
        reason = (f"{value:,} request(s) got no answer ({s['timed_out']:,} timed out after "
                  f"{s['timeout_s']} s, {s['stopped_in_flight']:,} still waiting when the run "
                  f"stopped): {where}")
    return [judged("requests_stalled", value <= t.max_stalled_requests, value,
                  t.max_stalled_requests, detail,
                  {"by_replica": s["by_replica"], "examples": s["examples"],
                   "timeout_s": s["timeout_s"]}, reason=reason)]


def _by_replica(segment: dict | None, key: str) -> dict:
    """Which replicas the requests went wrong on, worst first (a faulty replica named)."""
    if segment is None:
        return {}
    counts = {h: r[key] for h, r in segment["per_replica"].items() if r.get(key)}
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _where(segment: dict | None) -> dict | None:
    if segment is None:
        return None
    return {"segment": segment["index"], "stage": segment["stage"], "level": segment["level"]}
