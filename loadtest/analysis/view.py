"""What the report and the terminal say, in plain words: a view of the summary.

Everything here reads the summary (and its checks): the banner says what the
verdict composed, the findings say what each check found. No threshold is
compared again here.
"""

from __future__ import annotations

from loadtest.analysis.topics import STATE_KEYS, topic_of

COUNTER_LABELS = {
    "counter_duplicates": "duplicate values",
    "counter_unexpected": "values out of range",
    "counter_gaps": "unexplained gaps",
    "counter_lost_increments": "lost increments",
    "counter_unexplained_increments": "unexplained increments",
    "counter_final_below_returned": "values returned above the final counter",
    "counter_real_time_order": "real-time order violations",
    "counter_per_user_order": "per-user order violations",
}


def state_unchecked(summary: dict) -> str | None:
    """Why no shared state was checked, in words, or None when some was: a first look on
    an app of one's own must not read as if its state had passed."""
    state = [c for c in summary["checks"] if topic_of(c["name"]).key in STATE_KEYS]
    if any(c["status"] != "not applicable" for c in state):
        return None
    return ("shared state not checked: the app's answers carry no counter "
            "(--counter-field none) and your locustfile declares no state operations")


def banner(summary: dict) -> str:
    """``FAIL — 3 of 12 checks failed: a, b, c`` (and the like for the other verdicts),
    saying so when no shared state was checked at all."""
    checks = [c for c in summary["checks"] if c["status"] != "not applicable"]
    failed = [c["name"] for c in checks if c["status"] == "fail"]
    unchecked = [c["name"] for c in checks if c["status"] == "not checked"]
    verdict = summary["verdict"].upper()
    if failed:
        text = f"{verdict} — {len(failed)} of {len(checks)} checks failed: {', '.join(failed)}"
        if unchecked:
            text += f"; {len(unchecked)} could not be made: {', '.join(unchecked)}"
    elif unchecked:
        text = (f"{verdict} — {len(unchecked)} of {len(checks)} checks could not be made: "
                f"{', '.join(unchecked)}")
    else:
        text = f"{verdict} — all {len(checks)} applicable checks passed"
    why = state_unchecked(summary)
    return f"{text}; {why}" if why else text


def verdict_line(summary: dict) -> str:
    """``verdict: FAIL``, and how many requests have no record when some were lost (a
    full disk, a killed harness): the one number that says how far to trust the rest."""
    line = f"verdict: {summary['verdict'].upper()}"
    check = _check(summary, "records_complete") or {}
    evidence = check.get("evidence") or {}
    lost, locust = evidence.get("lost"), evidence.get("locust")
    if lost and locust:
        line += f" — {lost:,} of {locust:,} requests have no record"
    return line


def failed_topics(summary: dict) -> str | None:
    """``Failed: shared state (a, b); scale changes (c).``: every failed check by topic."""
    by_topic: dict[str, list[str]] = {}
    for c in summary["checks"]:
        if c["status"] == "fail":
            by_topic.setdefault(topic_of(c["name"]).words, []).append(c["name"])
    if not by_topic:
        return None
    return "Failed: " + "; ".join(f"{name} ({', '.join(names)})"
                                  for name, names in by_topic.items()) + "."


def _capital(text: str | None) -> str | None:
    return f"{text[0].upper()}{text[1:]}." if text else None


def replicas_word(n: int) -> str:
    return f"{n} replica" + ("" if n == 1 else "s")


def _check(summary: dict, name: str) -> dict | None:
    return next((c for c in summary["checks"] if c["name"] == name), None)


def findings(summary: dict) -> list[str]:
    """The answers in plain words, for someone who has not read the rest: first what
    failed, by topic, and whether shared state was checked at all."""
    out = [line for line in (failed_topics(summary), _capital(state_unchecked(summary)))
           if line]
    out += _run_findings(summary)
    out += _spread_findings(summary)
    out += _counter_findings(summary)
    out += _throughput_findings(summary)
    out += _error_findings(summary)
    for fault in summary["faults"]:
        out.append(fault_sentence(fault))
    a = summary.get("autoscaling")
    if a:
        out.append(autoscaling_sentence(a))
    return out


def _run_findings(summary: dict) -> list[str]:
    """How the run went: not completed, stages missing, warnings while it ran."""
    out = []
    status = summary["run"].get("status")
    if status and status != "completed":
        why = summary["run"].get("error")
        out.append(f"The run did not complete (status: {status}"
                   + (f"; {why}" if why else "") + "): what it recorded is analysed, and the "
                   "verdict cannot be a pass.")
    for missing in summary["run"].get("stages_missing") or []:
        out.append(f"Planned stage {missing['index']} ({replicas_word(missing['level'] or 0)}) "
                   f"{missing['why']}.")
    for warning in summary["run"].get("warnings") or []:
        out.append(f"While it ran: {warning.get('text')}.")
    return out


def _spread_findings(summary: dict) -> list[str]:
    """Whether requests reached every replica, and evenly."""
    out = []
    jain = _check(summary, "fairness_jain")
    cover = _check(summary, "coverage_uncovered_replicas")
    if cover and cover["status"] == "fail":
        out.append("Some replicas that were up got no requests: "
                   f"{', '.join(cover['evidence'].get('replicas', []))}.")
    if jain and jain["status"] == "pass":
        out.append(f"Requests were spread evenly over the replicas in service at every replica "
                   f"count ({jain['detail']}; lowest Jain index {jain['value']:.3f}, 1 is even).")
    elif jain and jain["status"] == "fail":
        where = jain["evidence"].get("segment") or {}
        out.append(f"Requests were spread unevenly with {replicas_word(where.get('level', 0))} "
                   f"(Jain {jain['value']:.3f} in segment {where.get('segment')}; "
                   f"{jain['detail']}).")
    return out


def _counter_findings(summary: dict) -> list[str]:
    """What the consistency checks of the shared counter found, and what they could not see."""
    out = []
    counter = [c for c in summary["checks"] if c["name"].startswith("counter_")]
    c = summary["consistency"]
    bad = [ch for ch in counter if ch["status"] == "fail"]
    unchecked = [ch for ch in counter if ch["status"] == "not checked"]
    if counter and all(ch["status"] == "not applicable" for ch in counter):
        out.append("The app has no counter (--counter-field none): consistency is not "
                   "applicable.")
    elif bad:
        out.append("The shared counter was NOT consistent: " + ", ".join(
            f"{ch['value']:,} {COUNTER_LABELS.get(ch['name'], ch['name'])}" for ch in bad) + ".")
    elif c.get("ok") and not unchecked:
        out.append(f"The shared counter stayed consistent: {c['ok']:,} values came back with "
                   "no duplicates, no lost or unexplained increments and no order violations"
                   + (f"; {c['unknown']:,} requests had an unknown outcome, all accounted for"
                      if c.get("unknown") else "") + ".")
    if unchecked:
        reasons = sorted({ch["reason"] for ch in unchecked if ch["reason"]})
        out.append(f"Not checked: {', '.join(ch['name'] for ch in unchecked)}"
                   + (f" ({'; '.join(reasons)})" if reasons else "") + ".")
    if c.get("hidden_attempts"):
        out.append(f"The HTTP client resent {c['hidden_attempts']:,} request(s) by itself after "
                   "a connection closed under them (Locust counted each once): each unseen "
                   "attempt may have reached the app, and is checked as an unknown outcome.")
    elif summary["requests"] and not c.get("attempts_counted"):
        out.append("Attempts on the wire were not counted (the scenario's users are not "
                   "loadtest.users.ScalecheckHttpUser): a request the HTTP client resent by "
                   "itself would go unseen.")
    for reset in c.get("resets") or []:
        out.append(f"Redis lost the counter in a restart without persistence (from "
                   f"{reset['counter_before']} back to {reset['counter_after']}); the history "
                   "was checked on each side of the reset.")
    return out


def _throughput_findings(summary: dict) -> list[str]:
    """Requests/s by replica count (or in all, on a stack the harness does not control),
    and whether the replicas expected answered and stayed."""
    out = []
    controlled = (summary["run"].get("stack") or {}).get("controlled", True)
    levels = [lv for lv in summary["levels"] if lv["requests"]]
    if controlled and levels:
        per = ", ".join(f"{replicas_word(lv['level'])}: {lv['rps']:,.0f}" for lv in levels)
        line = f"Requests/s by number of replicas: {per}."
        top = max(levels, key=lambda lv: lv["level"])
        eff = top.get("scaling_efficiency")
        if eff is not None and top["level"] > levels[0]["level"]:
            line += (f" Scaling efficiency with {replicas_word(top['level'])}: {eff:.2f} (1.0 "
                     "would be linear; where load generator, balancer and replicas share a few "
                     "cores, expect much less).")
        out.append(line)
    elif levels:
        answered = len({h for lv in levels for h in lv["per_replica"]})
        out.append(f"Requests/s: {levels[0]['rps']:,.0f}, answered by "
                   f"{replicas_word(answered)} (the harness does not control this stack).")
    expected = _check(summary, "replicas_expected")
    if expected and expected["status"] == "fail":
        out.append(f"{replicas_word(expected['value'])} answered, but "
                   f"{expected['threshold']} were expected.")
    died = _check(summary, "replicas_died")
    if died and died["status"] == "fail":
        out.append(f"Replicas stopped on their own: {', '.join(died['evidence']['replicas'])} "
                   "(their time in service ends there).")
    return out


def _error_findings(summary: dict) -> list[str]:
    """Where requests failed: steady segments, scale changes, faults."""
    out = []
    steady_errors = sum(s["errors"] for s in summary["segments"] if not s["faults"])
    trans_errors = sum(t["errors"] for t in summary["transitions"])
    fault_errors = sum(f.get("errors", 0) for f in summary["faults"])
    if steady_errors or trans_errors or fault_errors:
        out.append(f"{steady_errors:,} errors in steady segments, {trans_errors:,} around scale "
                   f"changes" + (f", {fault_errors:,} while faults were in effect"
                                 if summary["faults"] else "") + ".")
    else:
        out.append("No request failed, in steady segments or around scale changes"
                   + (" or faults." if summary["faults"] else "."))
    errors = _check(summary, "error_rate")
    if errors and errors["status"] == "fail":
        where = errors["evidence"].get("segment") or {}
        by = errors["evidence"].get("errors_by_replica") or {}
        out.append(f"Requests failed in steady operation: {errors['value']:.1%} with "
                   f"{replicas_word(where.get('level', 0))} (segment {where.get('segment')})"
                   + (": " + ", ".join(f"{h} {n:,}" for h, n in list(by.items())[:5])
                      if by else "") + ".")
    moved = _check(summary, "transition_errors")
    if moved and moved["status"] == "fail":
        out.append(f"Requests were cut while the stack was rescaled: {moved['reason']}.")
    elif moved and moved["status"] == "pass":
        out.append(_cut_sentence(moved))
    for change in (moved or {}).get("evidence", {}).get("changes", []):
        if change["status"] == "judged with its fault":
            out.append(f"The scale change {change['change']} ({change['by']}) overlapped a "
                       f"fault: {change['note']}.")
    return out


def _cut_sentence(moved: dict) -> str:
    """What the scale changes cut, as the check counted it: the count in words agrees
    with the check's evidence (a relaxed threshold can pass a change that cut some), and
    the app's own 4xx answers are said apart."""
    changes = moved["evidence"]["changes"]
    judged = [c for c in changes if c["status"] == "pass"]
    apart = " judged apart from faults" if len(judged) < len(changes) else ""
    cut = sum(c["cut"] for c in judged)
    sent = sum(c["requests"] for c in judged)
    if cut:
        text = (f"{cut:,} of {sent:,} requests were cut at the {len(judged)} scale "
                f"change(s){apart}, within the allowed rate of {moved['threshold']:.2%}")
    else:
        text = f"No request was cut at any of the {len(judged)} scale changes{apart}"
    refused = sum(c.get("app_4xx", 0) for c in judged)
    if refused:
        text += (f"; the app answered {refused:,} of them 4xx itself (counted apart, not "
                 "cut)")
    return text + "."


def fault_sentence(f: dict) -> str:
    name = f["spec"] or f["kind"]
    if f["applied"] is None:
        return f"Fault {name}: not applied ({f.get('note')})."
    on = f" on {f['details']['hostname']}" if f["details"].get("hostname") else ""
    text = (f"Fault {name}{on}: {f['errors']:,} errors and {f['unknown']:,} unknown outcomes "
            f"of {f['requests']:,} requests; ")
    text += (f"recovered {f['recovery_s']:.1f} s after it ended" if f["recovery_s"] is not None
             else "did not recover before the run ended")
    if "replaced_after_s" in f:
        text += ("; replaced after " + f"{f['replaced_after_s']:.1f} s"
                 if f["replaced_after_s"] is not None else "; not replaced")
    if f.get("note"):
        text += f". {f['note']}"
    return text + "."


def autoscaling_sentence(a: dict) -> str:
    text = (f"The autoscaler ({a['policy']} on {a['metric']}, target {a['target']:g} per "
            f"replica) decided {a['decisions']} times and changed the replica count "
            f"{a['scale_changes']} times, using {a['replica_seconds']:,} replica-seconds")
    if a.get("rises"):
        slowest = a["max_time_to_scale_s"]
        text += (f"; the slowest rise of load was met in {slowest:.1f} s" if slowest is not None
                 else "; a rise of load was never met")
    if a.get("under_provisioned_replica_s") is not None:
        text += (f"; under-provisioned {a['under_provisioned_replica_s']:,} and "
                 f"over-provisioned {a['over_provisioned_replica_s']:,} replica-seconds "
                 f"(capacity {a['capacity_per_replica']:.0f} req/s per replica: "
                 f"{a['capacity_source']})")
    if a.get("slo_violation_s") is not None:
        text += f"; {a['slo_violation_s']} s with p95 above {a['slo_p95_ms']:g} ms"
    text += f"; {a['flaps']} flap(s)."
    return text
