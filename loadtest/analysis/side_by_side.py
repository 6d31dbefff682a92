"""Several analysed runs side by side (``analyze.py --compare RUN_A RUN_B ...``).

Levels (req/s, p50, p99 by replica count), errors, the counter, autoscaling and
the verdicts with their checks, one column per run; every run after the first
is also compared with the first, with confidence (``compare.compare_levels``).
Rendered to HTML and Markdown from Jinja templates, from the summaries alone.
"""

from __future__ import annotations

from loadtest.analysis import view
from loadtest.analysis.compare import METRICS, compare_levels, finding
from loadtest.analysis.markdown import bounded
from loadtest.analysis.templating import environment
from loadtest.analysis.timelines import compare_timelines

COUNTER_KEYS = ("ok", "fail", "unknown", "duplicates", "unexplained_gaps", "lost",
                "unexplained_increments", "order_violations", "counter_before",
                "counter_after")
AUTOSCALING_KEYS = ("policy", "metric", "decisions", "scale_changes", "replica_seconds",
                    "max_time_to_scale_s", "slo_violation_s", "flaps")
MARKDOWN_LIMIT = 1024 * 1024


def _level_cell(level: dict | None) -> dict | None:
    if level is None:
        return None
    lat = level.get("latency_ms") or {}
    return {"rps": level.get("rps"), "p50": lat.get("p50"), "p99": lat.get("p99"),
            "error_rate": level.get("error_rate"), "requests": level.get("requests")}


def side_by_side(summaries: list[dict], names: list[str] | None = None) -> dict:
    """The comparison as plain data: one column per run, in the order given."""
    names = names or [s.get("run_id") or f"run {i + 1}" for i, s in enumerate(summaries)]
    runs = []
    for name, s in zip(names, summaries):
        checks = s.get("checks") or []
        steady = sum(seg.get("errors", 0) for seg in s.get("segments") or []
                     if not seg.get("faults"))
        runs.append({
            "name": name, "run_id": s.get("run_id"), "verdict": s.get("verdict"),
            "banner": view.banner(s) if checks else s.get("verdict"),
            "requests": s.get("requests"), "status": (s.get("run") or {}).get("status"),
            "errors": {"steady": steady,
                       "transitions": sum(t.get("errors", 0) for t in s.get("transitions") or []),
                       "faults": sum(f.get("errors", 0) or 0 for f in s.get("faults") or [])},
            "counter": {k: (s.get("consistency") or {}).get(k) for k in COUNTER_KEYS},
            "autoscaling": {k: (s.get("autoscaling") or {}).get(k) for k in AUTOSCALING_KEYS}
            if s.get("autoscaling") else None,
            "failed": [c["name"] for c in checks if c["status"] == "fail"],
            "unchecked": [c["name"] for c in checks if c["status"] == "not checked"],
        })
    levels = sorted({lv.get("level") for s in summaries for lv in s.get("levels") or []},
                    key=lambda x: (x is None, x))
    by_run = [{lv.get("level"): lv for lv in s.get("levels") or []} for s in summaries]
    level_rows = [{"level": level, "cells": [_level_cell(b.get(level)) for b in by_run]}
                  for level in levels]
    check_names = list(dict.fromkeys(c["name"] for s in summaries for c in s.get("checks") or []))
    status = [{c["name"]: c["status"] for c in s.get("checks") or []} for s in summaries]
    check_rows = [{"name": n, "cells": [st.get(n, "—") for st in status]} for n in check_names]
    against_first = []
    base = summaries[0].get("levels") or [] if summaries else []
    for name, s in list(zip(names, summaries))[1:]:
        lines = []
        for row in compare_levels(s.get("levels") or [], base):
            for metric, *_ in METRICS:
                entry = row["metrics"][metric]
                if entry["ci"] is not None:
                    lines.append(finding(metric, row["level"], entry["ci"], entry["ci"]["change"]))
                elif entry["plain_change"] is not None:
                    lines.append(finding(metric, row["level"], None, entry["plain_change"])
                                 + f" ({entry['why_no_ci']})")
        against_first.append({"name": name, "lines": lines})
    return {"runs": runs, "levels": level_rows, "checks": check_rows,
            "against_first": against_first, "first": names[0] if names else None,
            "any_autoscaling": any(r["autoscaling"] for r in runs),
            "timelines": compare_timelines(summaries, names), "timelines_png": False,
            "counter_keys": COUNTER_KEYS, "autoscaling_keys": AUTOSCALING_KEYS}


def render_compare_html(model: dict) -> str:
    return environment(True).get_template("compare.html.j2").render(**model)


def render_compare_markdown(model: dict, max_bytes: int = MARKDOWN_LIMIT) -> str:
    return bounded(environment(False).get_template("compare.md.j2").render(**model), max_bytes)


__all__ = ["render_compare_html", "render_compare_markdown", "side_by_side"]
