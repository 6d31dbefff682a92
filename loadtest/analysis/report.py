"""Render an analysis: one self-contained HTML page (from a Jinja template, with the
figures of ``figures``), and a short terminal summary. Everything here reads the
summary; the words come from ``view``."""

from __future__ import annotations

import base64

from loadtest.analysis import view
from loadtest.analysis.summary import Analysis
from loadtest.analysis.templating import environment, fmt
from loadtest.analysis.topics import topic_of


def render_html(analysis: Analysis, images: dict[str, bytes]) -> str:
    s = analysis.summary
    model = {
        "s": s,
        "banner": view.banner(s),
        "findings": view.findings(s),
        "img": {k: "data:image/png;base64," + base64.b64encode(v).decode()
                for k, v in images.items()},
        "backend": (s["run"].get("stack") or {}).get("backend", "?"),
        "balancer": (s["run"].get("stack") or {}).get("balancer"),
        "controlled": (s["run"].get("stack") or {}).get("controlled", True),
        "changes": [(kind, ch) for kind in ("added", "removed", "died")
                    for ch in s["changes"][kind]],
        "consistency_rows": [(k, s["consistency"].get(k)) for k in (
            "ok", "fail", "unknown", "counter_before", "counter_after", "max_returned",
            "duplicates", "unexpected", "gaps", "unexplained_gaps", "lost",
            "unexplained_increments", "final_below_returned", "order_violations",
            "user_violations")],
        "baseline_levels": {b["level"]: b for b in s["baseline"]["levels"]}
        if "baseline" in s else {},
        "state_checks": [c for c in s["checks"] if c["status"] != "not applicable" and
                         topic_of(c["name"]).key == "state"],
        "transition_status": {c["index"]: c for check in s["checks"]
                              if check["name"] == "transition_errors"
                              for c in check["evidence"].get("changes", [])},
    }
    return environment(True).get_template("report.html.j2").render(**model)


def terminal(summary: dict) -> str:
    lines = [f"run {summary['run_id']}: {summary['requests']:,} requests"]
    lines.append(f"{'replicas':>8} {'segments':>8} {'requests':>9} {'req/s':>8} {'eff':>5} "
                 f"{'err%':>6} {'unkn%':>6} {'p50':>7} {'p99':>7}  per replica")
    for lv in summary["levels"]:
        eff = lv.get("scaling_efficiency")
        lines.append(
            f"{(lv['level'] or '?'):>8} {lv['segments']:>8} {lv['requests']:>9,} "
            f"{lv['rps']:>8.0f} {(f'{eff:.2f}' if eff else '—'):>5} "
            f"{lv['error_rate'] * 100:>6.2f} {lv['unknown_rate'] * 100:>6.2f} "
            f"{_num(lv['latency_ms']['p50']):>7} {_num(lv['latency_ms']['p99']):>7}  "
            + " ".join(f"{h}:{r['requests']}({_num(r['p99_ms'])}ms)"
                       for h, r in lv["per_replica"].items()))
    c = summary["consistency"]
    outcomes = f"ok {c['ok']:,}, fail {c['fail']:,}, unknown {c['unknown']:,}"
    if str((summary["run"].get("options") or {}).get("counter_field")) == "none":
        lines.append(f"outcomes: {outcomes} (no counter: not checked for consistency)")
    else:
        lines.append(f"counter: {outcomes}; duplicates {c['duplicates']}, "
                     f"lost {_num(c['lost'])}, order violations {c['order_violations']}")
    for fault in summary["faults"]:
        lines.append(f"fault {fault['spec']}: errors {fault.get('errors', '—')}, unknown "
                     f"{fault.get('unknown', '—')}, recovery {_num(fault.get('recovery_s'))} s")
    lines.extend(f"- {line}" for line in view.findings(summary))
    for chk in summary["checks"]:
        if chk["status"] in ("fail", "not checked"):
            why = f" — {chk['reason']}" if chk["reason"] else ""
            lines.append(f"  {chk['status'].upper():>11}  {chk['name']}: {fmt(chk['value'])} "
                         f"(threshold {fmt(chk['threshold'])}){why}")
    lines.append(view.banner(summary))
    lines.append(view.verdict_line(summary))
    return "\n".join(lines)


def _num(value) -> str:
    return "—" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
