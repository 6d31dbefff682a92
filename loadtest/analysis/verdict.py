"""Named checks against thresholds; the verdict is ``pass`` only if every check passes.

A check that could not be made (no counter read on an external stack, no
Locust total) says "not checked" instead of passing.
"""

from __future__ import annotations

from loadtest.analysis.thresholds import Thresholds


def _check(name: str, value, threshold, passed, why: str = "") -> dict:
    status = "not checked" if passed is None else ("pass" if passed else "fail")
    return {"name": name, "passed": passed, "status": status, "value": value,
            "threshold": threshold, "detail": why}


def _at_most(name, value, limit, why=""):
    return _check(name, value, limit, None if value is None else value <= limit, why)


def checks(summary: dict, t: Thresholds, baseline: dict | None = None) -> list[dict]:
    c = summary["consistency"]
    totals = summary["totals"]
    out = []
    locust = totals.get("locust")
    out.append(_check("records_complete", totals.get("recorded"), locust,
                      None if locust is None else totals.get("recorded") == locust,
                      "every request Locust counted has a record"))
    no_values = c["ok"] == 0
    for name, key, why in [
        ("counter_duplicates", "duplicates", "a value handed out twice"),
        ("counter_unexpected", "unexpected", "values outside (before, before+ok+unknown]"),
        ("counter_gaps", "unexplained_gaps", "missing values not explained by unknown requests"),
        ("counter_lost_increments", "lost", "after < before + ok"),
        ("counter_unexplained_increments", "unexplained_increments",
         "after > before + ok + unknown"),
        ("counter_real_time_order", "order_violations", "a later request saw a lower value"),
        ("counter_per_user_order", "user_violations", "one user's values did not increase"),
    ]:
        value = None if (no_values and key not in ("lost", "unexplained_increments")) else c[key]
        out.append(_at_most(name, value, 0, why))
    stages = summary["stages"]
    rates = [s["error_rate"] for s in stages if s["requests"]]
    out.append(_at_most("error_rate", max(rates) if rates else None, t.max_error_rate,
                        "worst stage, steady window"))
    multi = [s for s in stages if len(s["hostnames"]) >= 2 and s["requests"]]
    jains = [s["fairness"]["jain"] for s in multi if s["fairness"]["jain"] is not None]
    out.append(_check("fairness_jain", min(jains) if jains else None, t.min_jain,
                      None if not jains else min(jains) >= t.min_jain,
                      "lowest over stages with 2+ replicas"))
    uncovered = sum(len(s["uncovered"]) for s in stages)
    out.append(_at_most("coverage_uncovered_replicas", uncovered, 0,
                        "replicas in service that got no request"))
    late = sum(r["served_after_removal"] for s in stages for r in s["changes"]["removed"])
    out.append(_at_most("served_after_removal", late, 0,
                        "requests routed to a replica after it was removed"))
    if t.max_cv is not None:
        cvs = [s["fairness"]["cv"] for s in multi if s["fairness"]["cv"] is not None]
        out.append(_at_most("fairness_cv", max(cvs) if cvs else None, t.max_cv))
    if t.min_chi2_p is not None:
        ps = [s["fairness"]["chi2_p"] for s in multi if s["fairness"]["chi2_p"] is not None]
        out.append(_check("fairness_chi2_p", min(ps) if ps else None, t.min_chi2_p,
                          None if not ps else min(ps) >= t.min_chi2_p))
    if t.max_p99_ms is not None:
        p99s = [s["latency_ms"]["p99"] for s in stages if s["latency_ms"]["p99"] is not None]
        out.append(_at_most("latency_p99_ms", max(p99s) if p99s else None, t.max_p99_ms))
    if t.min_scaling_efficiency is not None:
        effs = [s["scaling_efficiency"] for s in stages[1:] if s.get("scaling_efficiency")]
        out.append(_check("scaling_efficiency", min(effs) if effs else None,
                          t.min_scaling_efficiency,
                          None if not effs else min(effs) >= t.min_scaling_efficiency))
    if baseline is not None:
        out.extend(regression_checks(summary, baseline, t))
    return out


def regression_checks(summary: dict, baseline: dict, t: Thresholds) -> list[dict]:
    """Per scale level present in both runs: requests/s must not drop, p99 must not rise, much."""
    base = {s["level"]: s for s in baseline["stages"]}
    out = []
    for stage in summary["stages"]:
        old = base.get(stage["level"])
        if old is None or not old["rps"]:
            continue
        drop = 1 - stage["rps"] / old["rps"]
        out.append(_check(f"regression_rps_level_{stage['level']}", round(drop, 4),
                          t.max_rps_drop, drop <= t.max_rps_drop,
                          f"relative drop of requests/s ({old['rps']:.0f} -> {stage['rps']:.0f})"))
        p_new, p_old = stage["latency_ms"]["p99"], old["latency_ms"]["p99"]
        if p_new is not None and p_old:
            rise = p_new / p_old - 1
            out.append(_check(f"regression_p99_level_{stage['level']}", round(rise, 4),
                              t.max_p99_increase, rise <= t.max_p99_increase,
                              f"relative rise of p99 ({p_old:.1f} -> {p_new:.1f} ms)"))
    return out


def verdict(check_list: list[dict]) -> str:
    return "pass" if all(c["passed"] is not False for c in check_list) else "fail"
