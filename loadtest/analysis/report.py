"""Render an analysis: figures (matplotlib, PNG), one self-contained HTML page,
and a short terminal summary. Everything here reads the analysis' data; no
number is computed here that the summary does not already hold."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from loadtest.analysis.summary import Analysis  # noqa: E402


def _save(fig, path: Path) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def _stage_marks(ax, summary: dict, t0: float) -> None:
    for stage in summary["stages"]:
        ax.axvline(stage["t_start"] - t0, color="black", lw=0.8, ls="--")
        ax.text(stage["t_start"] - t0, 1.0, f" ×{stage['level']}",
                transform=ax.get_xaxis_transform(), va="bottom", fontsize=8)
    for tr in summary["transitions"]:
        ax.axvspan(tr["t_start"] - t0, tr["t_end"] - t0, color="orange", alpha=0.2, lw=0)


def figures(analysis: Analysis, out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True, exist_ok=True)
    s = analysis.summary
    t0 = s["timeline"]["t0"]
    made = {}

    stages = s["stages"]
    fig, axes = plt.subplots(1, len(stages), figsize=(max(4, 3.2 * len(stages)), 3), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        names = list(stage["hostnames"])
        ax.bar(names, [stage["hostnames"][n] for n in names],
               color=["#d62728" if n in stage["uncovered"] else "#1f77b4" for n in names])
        jain = stage["fairness"]["jain"]
        ax.set_title(f"stage {stage['index']}: ×{stage['level']}"
                     + (f"  Jain {jain:.3f}" if jain is not None else ""), fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    axes[0][0].set_ylabel("requests (steady window)")
    made["distribution"] = _save(fig, out / "distribution.png")

    tl = s["timeline"]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = np.arange(tl["seconds"])
    if tl["per_hostname"]:
        ax.stackplot(x, *tl["per_hostname"].values(), labels=list(tl["per_hostname"]), step="post")
    ax.plot(x, tl["errors"], color="red", lw=1, label="errors")
    _stage_marks(ax, s, t0)
    ax.set_xlabel("seconds since first request")
    ax.set_ylabel("requests/s")
    ax.legend(fontsize=7, ncol=6, loc="upper left")
    made["throughput"] = _save(fig, out / "throughput.png")

    fig, ax = plt.subplots(figsize=(6, 3))
    keys = ["p50", "p90", "p95", "p99"]
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(np.arange(len(stages)) + i * width,
               [st["latency_ms"][key] or 0 for st in stages], width, label=key)
    ax.set_xticks(np.arange(len(stages)) + 0.4 - width / 2,
                  [f"×{st['level']}" for st in stages])
    ax.set_ylabel("latency, ms")
    ax.legend(fontsize=8)
    made["latency"] = _save(fig, out / "latency.png")

    made["counter"] = _counter_figure(analysis, out / "counter.png", t0)

    fig, ax1 = plt.subplots(figsize=(6, 3))
    labels = [f"×{st['level']}" for st in stages]
    ax1.bar(labels, [st["rps"] for st in stages], color="#1f77b4")
    ax1.set_ylabel("requests/s (steady)")
    ax2 = ax1.twinx()
    ax2.plot(labels, [st.get("scaling_efficiency") or np.nan for st in stages],
             color="#ff7f0e", marker="o")
    ax2.set_ylabel("scaling efficiency")
    ax2.set_ylim(0, 1.2)
    made["scaling"] = _save(fig, out / "scaling.png")

    if "baseline" in s:
        base = {b["level"]: b for b in s["baseline"]["stages"]}
        levels = [st["level"] for st in stages if st["level"] in base]
        if levels:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3))
            idx = np.arange(len(levels))
            this = {st["level"]: st for st in stages}
            a1.bar(idx - 0.2, [base[lv]["rps"] for lv in levels], 0.4, label="baseline")
            a1.bar(idx + 0.2, [this[lv]["rps"] for lv in levels], 0.4, label="this run")
            a1.set_title("requests/s")
            a2.bar(idx - 0.2, [base[lv]["latency_ms"]["p99"] or 0 for lv in levels], 0.4,
                   label="baseline")
            a2.bar(idx + 0.2, [this[lv]["latency_ms"]["p99"] or 0 for lv in levels], 0.4,
                   label="this run")
            a2.set_title("p99 latency, ms")
            for a in (a1, a2):
                a.set_xticks(idx, [f"×{lv}" for lv in levels])
                a.legend(fontsize=8)
            made["baseline"] = _save(fig, out / "baseline.png")
    return made


def _counter_figure(analysis: Analysis, path: Path, t0: float) -> bytes:
    ok = analysis.points
    fig, ax = plt.subplots(figsize=(10, 3.5))
    if len(ok):
        for name, group in ok.groupby("hostname", dropna=False):
            ax.scatter(group["t_end"] - t0, group["counter"], s=3, label=str(name),
                       rasterized=True)
    markers = {"duplicate": ("x", "red"), "order": ("v", "purple"), "unexpected": ("s", "black")}
    for kind, points in analysis.anomalies.items():
        if len(points):
            total = analysis.summary["consistency"].get(
                {"duplicate": "duplicates", "order": "order_violations"}.get(kind, kind))
            shown = points[:: max(1, len(points) // 500)]  # enough to see where, not a wall
            marker, color = markers.get(kind, ("o", "red"))
            ax.scatter(shown[:, 0] - t0, shown[:, 1], s=14, marker=marker, color=color,
                       alpha=0.7, label=f"{kind} ({total or len(points):,})", zorder=5)
    _stage_marks(ax, analysis.summary, t0)
    ax.set_xlabel("seconds since first request")
    ax.set_ylabel("counter value seen")
    ax.legend(fontsize=7, ncol=6, loc="upper left", markerscale=2)
    return _save(fig, path)


def findings(summary: dict) -> list[str]:
    """The answers in plain words, for someone who has not read the rest."""
    out = []
    stages = [s for s in summary["stages"] if s["requests"]]
    multi = [s for s in stages if len(s["hostnames"]) >= 2]
    if multi:
        worst = min(multi, key=lambda s: s["fairness"]["jain"] or 0)
        uncovered = sorted({h for s in stages for h in s["uncovered"]})
        if uncovered:
            out.append(f"Some replicas that were up got no requests: {', '.join(uncovered)}.")
        elif (worst["fairness"]["jain"] or 0) >= summary["thresholds"]["min_jain"]:
            out.append("Requests were spread evenly over the replicas that were up at every "
                       f"level (lowest Jain index {worst['fairness']['jain']:.3f}; 1 is even).")
        else:
            out.append(f"Requests were spread unevenly with {worst['level']} replicas (Jain "
                       f"{worst['fairness']['jain']:.3f}; largest share "
                       f"{max(worst['share'].values()):.0%}).")
    c = summary["consistency"]
    problems = [f"{c[k]:,} {label}" for k, label in (
        ("duplicates", "duplicate values"), ("lost", "lost increments"),
        ("order_violations", "real-time order violations"),
        ("unexplained_gaps", "unexplained gaps"), ("unexpected", "values out of range"))
        if c.get(k)]
    if problems:
        out.append("The shared counter was NOT consistent: " + ", ".join(problems) + ".")
    elif c["ok"] and "reconciliation" in c["not_checked"]:
        out.append(f"The counter looked consistent: {c['ok']:,} values came back with no "
                   "duplicates and no order violations; lost increments were not checked "
                   "(the counter could not be read before and after the run).")
    elif c["ok"]:
        out.append(f"The shared counter stayed consistent: {c['ok']:,} values came back with no "
                   "duplicates, no lost increments and no order violations.")
    if len(stages) >= 2:
        per_level = ", ".join(f"×{s['level']}: {s['rps']:,.0f}" for s in stages)
        line = f"Requests/s by number of replicas: {per_level}."
        top = max(stages, key=lambda s: s["level"])
        eff = top.get("scaling_efficiency")
        if eff is not None and top["level"] > stages[0]["level"]:
            line += (f" Scaling efficiency at ×{top['level']}: {eff:.2f} (1.0 would be linear; "
                     "where load generator, balancer and replicas share a few cores, expect "
                     "much less).")
        out.append(line)
    errors = sum(s["errors"] for s in stages)
    trans_errors = sum(t["errors"] for t in summary["transitions"])
    out.append(f"{errors:,} errors in the steady windows and {trans_errors:,} around scale "
               "changes." if errors or trans_errors else
               "No request failed, in the steady windows or around scale changes.")
    return out


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def render_html(analysis: Analysis, images: dict[str, bytes]) -> str:
    s = analysis.summary
    img = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in images.items()}
    ok = s["verdict"] == "pass"
    failed = [c for c in s["checks"] if c["passed"] is False]
    parts = [f"""<!doctype html><html><head><meta charset="utf-8">
<title>scalecheck: {html.escape(str(s['run_id']))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
.verdict {{ padding: 1em 1.5em; border-radius: 8px; font-size: 1.3em; color: white;
           background: {'#2e7d32' if ok else '#c62828'}; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
td:last-child, th:last-child {{ text-align: left; }}
.fail {{ color: #c62828; font-weight: bold; }} .pass {{ color: #2e7d32; }}
.na {{ color: #888; }} img {{ max-width: 100%; }} .note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>scalecheck report — {html.escape(str(s['run_id']))}</h1>
<div class="verdict">Verdict: <b>{s['verdict'].upper()}</b> — {len(s['checks']) - len(failed)}
of {len(s['checks'])} checks pass{'' if ok else ': ' + ', '.join(c['name'] for c in failed)}</div>
<p class="note">{s['requests']:,} requests over {len(s['stages'])} stage(s)
(scale levels {', '.join('×' + str(st['level']) for st in s['stages'])});
stack: {html.escape(str((s['run'].get('stack') or {}).get('backend', '?')))},
run status: {html.escape(str(s['run'].get('status')))}.</p>
<h2>In short</h2><ul>{''.join(f"<li>{html.escape(line)}</li>" for line in findings(s))}</ul>
<h2>Checks</h2><table><tr><th>check</th><th>value</th><th>threshold</th><th>result</th>
<th>meaning</th></tr>"""]
    for c in s["checks"]:
        cls = {"pass": "pass", "fail": "fail"}.get(c["status"], "na")
        parts.append(f"<tr><td>{c['name']}</td><td>{_fmt(c['value'])}</td>"
                     f"<td>{_fmt(c['threshold'])}</td><td class='{cls}'>{c['status']}</td>"
                     f"<td style='text-align:left'>{html.escape(c['detail'])}</td></tr>")
    parts.append("</table><h2>Stages (steady window: from ready to stage end)</h2>"
                 "<p class='note'>scaling eff.: req/s against perfectly linear scaling from the "
                 "first level. Jain: 1 = perfectly even spread over the replicas in service. "
                 "Latencies in ms.</p>"
                 "<table><tr><th>stage</th><th>replicas</th><th>requests</th><th>req/s</th>"
                 "<th>scaling eff.</th><th>errors</th><th>p50</th><th>p90</th><th>p95</th>"
                 "<th>p99</th><th>max ms</th><th>Jain</th><th>CV</th><th>max/mean</th>"
                 "<th>χ² p</th><th>uncovered</th></tr>")
    for st in s["stages"]:
        lat, fair = st["latency_ms"], st["fairness"]
        parts.append(
            f"<tr><td>{st['index']}</td><td>{st['level']}</td><td>{st['requests']:,}</td>"
            f"<td>{_fmt(st['rps'])}</td><td>{_fmt(st.get('scaling_efficiency'))}</td>"
            f"<td>{st['error_rate']:.2%}</td>"
            + "".join(f"<td>{_fmt(lat[k])}</td>" for k in ("p50", "p90", "p95", "p99", "max"))
            + "".join(f"<td>{_fmt(fair[k])}</td>" for k in ("jain", "cv", "max_mean", "chi2_p"))
            + f"<td>{', '.join(st['uncovered']) or '—'}</td></tr>")
    parts.append(f"</table><h3>Requests per replica</h3><img src='{img['distribution']}'>")
    parts.append("<table><tr><th>stage</th><th>replica</th><th>requests</th><th>share</th>"
                 "<th>in service, s</th></tr>")
    for st in s["stages"]:
        for name, count in st["hostnames"].items():
            parts.append(f"<tr><td>{st['index']}</td><td>{html.escape(name)}</td>"
                         f"<td>{count:,}</td><td>{st['share'][name]:.1%}</td>"
                         f"<td>{st['in_service_s'][name]}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>Throughput over time</h2><p class='note'>Dashed lines: scale changes; "
                 "shaded: transitions (asked → ready + margin).</p>"
                 f"<img src='{img['throughput']}'>")
    if s["transitions"]:
        parts.append("<h3>Around each scale change</h3><table><tr><th>stage</th><th>to</th>"
                     "<th>ready after, s</th><th>requests</th><th>req/s</th><th>errors</th>"
                     "<th>p99 ms</th><th>max ms</th></tr>")
        for tr in s["transitions"]:
            parts.append(f"<tr><td>{tr['stage']}</td><td>×{tr['level']}</td>"
                         f"<td>{tr['ready_after_s']}</td><td>{tr['requests']:,}</td>"
                         f"<td>{_fmt(tr['rps'])}</td><td>{tr['errors']}</td>"
                         f"<td>{_fmt(tr['latency_ms']['p99'])}</td>"
                         f"<td>{_fmt(tr['latency_ms']['max'])}</td></tr>")
        parts.append("</table>")
    changes = [(st["index"], kind, ch) for st in s["stages"]
               for kind in ("added", "removed") for ch in st["changes"][kind]]
    if changes:
        parts.append("<h3>Replicas added and removed</h3><table><tr><th>stage</th><th>replica</th>"
                     "<th>change</th><th>first request after, s</th><th>served after drain began"
                     "</th><th>served after removal</th><th>errors around</th></tr>")
        for index, kind, ch in changes:
            parts.append(f"<tr><td>{index}</td><td>{html.escape(ch['hostname'])}</td>"
                         f"<td>{kind}</td><td>{_fmt(ch.get('first_request_delay_s'))}</td>"
                         f"<td>{ch.get('served_after_drain_began', '—')}</td>"
                         f"<td>{ch.get('served_after_removal', '—')}</td>"
                         f"<td>{ch.get('errors_around', '—')}</td></tr>")
        parts.append("</table>")
    parts.append(f"<h2>Latency per stage</h2><img src='{img['latency']}'>")
    c = s["consistency"]
    parts.append(
        "<h2>Counter consistency</h2><p class='note'>ok: a value came back; fail: the request "
        "surely never reached the app; unknown: it may or may not have incremented.</p><table>"
        + "".join(f"<tr><td>{k}</td><td>{_fmt(c.get(k))}</td></tr>" for k in (
            "ok", "fail", "unknown", "counter_before", "counter_after", "duplicates",
            "unexpected", "gaps", "unexplained_gaps", "lost", "unexplained_increments",
            "order_violations", "user_violations"))
        + "</table>")
    if c.get("not_checked"):
        parts.append(f"<p class='note'>Not checked: {', '.join(c['not_checked'])} "
                     "(the stack could not read the counter, or no value came back).</p>")
    for kind, examples in c.get("examples", {}).items():
        parts.append(f"<p><b>{kind}</b> (first {len(examples)}): "
                     f"<code>{html.escape(str(examples)[:1500])}</code></p>")
    parts.append(f"<img src='{img['counter']}'>")
    parts.append(f"<h2>Scaling</h2><img src='{img['scaling']}'>")
    if "baseline" in s:
        base = s["baseline"]
        parts.append(f"<h2>Against baseline {html.escape(str(base['run_id']))} "
                     f"(its verdict: {html.escape(str(base.get('verdict')))})</h2>")
        parts.append("<table><tr><th>replicas</th><th>req/s baseline</th><th>req/s this run</th>"
                     "<th>p99 baseline</th><th>p99 this run</th><th>errors baseline</th>"
                     "<th>errors this run</th><th>Jain baseline</th><th>Jain this run</th></tr>")
        old = {b["level"]: b for b in base["stages"]}
        for st in s["stages"]:
            b = old.get(st["level"])
            if b is None:
                continue
            parts.append(
                f"<tr><td>×{st['level']}</td><td>{_fmt(b['rps'])}</td><td>{_fmt(st['rps'])}</td>"
                f"<td>{_fmt(b['latency_ms']['p99'])}</td><td>{_fmt(st['latency_ms']['p99'])}</td>"
                f"<td>{b['error_rate']:.2%}</td><td>{st['error_rate']:.2%}</td>"
                f"<td>{_fmt(b['fairness']['jain'])}</td><td>{_fmt(st['fairness']['jain'])}</td>"
                "</tr>")
        parts.append("</table>")
        if "baseline" in img:
            parts.append(f"<img src='{img['baseline']}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def terminal(summary: dict) -> str:
    lines = [f"run {summary['run_id']}: {summary['requests']:,} requests"]
    lines.append(f"{'stage':>5} {'repl':>4} {'requests':>9} {'req/s':>8} {'eff':>5} "
                 f"{'err%':>6} {'p50':>7} {'p99':>7} {'jain':>6}  replicas")
    for st in summary["stages"]:
        eff = st.get("scaling_efficiency")
        jain = st["fairness"]["jain"]
        lines.append(
            f"{st['index']:>5} {st['level']:>4} {st['requests']:>9,} {st['rps']:>8.0f} "
            f"{(f'{eff:.2f}' if eff else '—'):>5} {st['error_rate'] * 100:>6.2f} "
            f"{_num(st['latency_ms']['p50']):>7} {_num(st['latency_ms']['p99']):>7} "
            f"{(f'{jain:.3f}' if jain is not None else '—'):>6}  "
            + " ".join(f"{h}:{n}" for h, n in st["hostnames"].items()))
    c = summary["consistency"]
    lines.append(f"counter: ok {c['ok']:,}, fail {c['fail']:,}, unknown {c['unknown']:,}; "
                 f"duplicates {c['duplicates']}, lost {_num(c['lost'])}, "
                 f"order violations {c['order_violations']}")
    lines.extend(f"- {line}" for line in findings(summary))
    for chk in summary["checks"]:
        if chk["passed"] is not True:
            lines.append(f"  {chk['status'].upper():>11}  {chk['name']}: {_fmt(chk['value'])} "
                         f"(threshold {_fmt(chk['threshold'])})")
    lines.append(f"verdict: {summary['verdict'].upper()}")
    return "\n".join(lines)


def _num(value) -> str:
    return "—" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
