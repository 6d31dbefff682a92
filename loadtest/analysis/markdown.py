"""A GitHub-flavoured Markdown summary of an analysed run, for a CI job's own page.

The verdict, the table by replica count, the failing and not-checked checks
with their evidence, and Mermaid ``xychart-beta`` charts (GitHub renders them
natively) of requests/s and p95 over time. Rendered from a Jinja template
(``templates/summary.md.j2``) from the summary alone, like report.html.

Bounded: GitHub accepts at most 1 MiB per step in ``$GITHUB_STEP_SUMMARY``.
Lists are cut to a fixed length (and say how many more there are), charts
are averaged down to ``CHART_POINTS`` points, and a last guard cuts the text
at a line, closing what was left open, if it still exceeds the limit.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

from loadtest.analysis import view
from loadtest.analysis.templating import environment, evidence_text

STEP_SUMMARY_LIMIT = 1024 * 1024  # GitHub: "up to 1MiB" per step
CHART_POINTS = 60
MAX_LEVELS = 40
MAX_CHECKS = 30        # failing, and not checked, each
MAX_FAULTS = 25
MAX_FINDINGS = 25
EVIDENCE_CHARS = 1500
ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️"}


def _evidence(check: dict) -> str:
    evidence = check.get("evidence") or {}
    return html.escape(evidence_text(evidence, EVIDENCE_CHARS), quote=False) if evidence else ""


def series(values: list, points: int = CHART_POINTS) -> tuple[list[float], int]:
    """``values`` averaged down to at most ``points`` numbers (None skipped; an all-None
    group reads 0, which Mermaid needs). Returns (numbers, seconds per point)."""
    n = len(values)
    if n == 0:
        return [], 1
    step = max(1, math.ceil(n / points))
    out = []
    for i in range(0, n, step):
        group = [float(v) for v in values[i:i + step] if v is not None]
        out.append(round(sum(group) / len(group), 2) if group else 0.0)
    return out, step


def _chart(title: str, y_label: str, values: list[float], step: int) -> dict | None:
    if not values:
        return None
    top = max(values) or 1.0
    return {"title": title, "x_label": f"seconds since the first request ({step} s a point)"
            if step > 1 else "seconds since the first request",
            "x_max": len(values) * step, "y_label": y_label, "y_max": _nice(top * 1.1),
            "data": ", ".join(f"{v:g}" for v in values)}


def _nice(x: float) -> float:
    """A round upper bound for an axis."""
    if x <= 0:
        return 1
    mag = 10 ** math.floor(math.log10(x))
    return next(m * mag for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * mag >= x)


def model(summary: dict) -> dict:
    """What the template needs, from the summary: lists cut, charts averaged down."""
    checks = summary.get("checks") or []
    failed = [c for c in checks if c["status"] == "fail"]
    unchecked = [c for c in checks if c["status"] == "not checked"]
    tl = summary.get("timeline") or {}
    rps, step = series(tl.get("total") or [])
    p95, step95 = series(tl.get("p95_ms") or [])
    findings = view.findings(summary)
    levels = summary.get("levels") or []
    faults = summary.get("faults") or []
    regress = [c for c in checks if c["name"].startswith("regression")]
    stack = (summary.get("run") or {}).get("stack") or {}
    return {
        "s": summary,
        "icon": ICONS.get(summary.get("verdict"), "❔"),
        "banner": view.banner(summary),
        "stack": stack.get("backend") or "?",
        "balancer": stack.get("balancer"),
        "findings": findings[:MAX_FINDINGS], "more_findings": max(0, len(findings) - MAX_FINDINGS),
        "levels": levels[:MAX_LEVELS], "more_levels": max(0, len(levels) - MAX_LEVELS),
        "failed": [(c, _evidence(c)) for c in failed[:MAX_CHECKS]],
        "more_failed": max(0, len(failed) - MAX_CHECKS),
        "unchecked": [(c, _evidence(c)) for c in unchecked[:MAX_CHECKS]],
        "more_unchecked": max(0, len(unchecked) - MAX_CHECKS),
        "passed": sum(1 for c in checks if c["status"] == "pass"),
        "not_applicable": sum(1 for c in checks if c["status"] == "not applicable"),
        "regressions": regress[:MAX_CHECKS * 3],
        "faults": faults[:MAX_FAULTS], "more_faults": max(0, len(faults) - MAX_FAULTS),
        "fault_sentences": [view.fault_sentence(f) for f in faults[:MAX_FAULTS]],
        "charts": [c for c in (
            _chart("Requests/s over time", "req/s", rps, step),
            _chart("p95 latency over time, ms", "ms", p95, step95)) if c],
        "autoscaling": view.autoscaling_sentence(summary["autoscaling"])
        if summary.get("autoscaling") else None,
    }


def bounded(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` bytes (UTF-8), else cut at a line, with what was
    left open closed and a note saying so."""
    data = text.encode()
    if len(data) <= limit:
        return text
    note = (f"\n\n*Cut here: this summary is longer than {limit:,} bytes. The whole of it is "
            "in report.html and summary.json.*\n")
    room = max(0, limit - len(note.encode()) - 32)
    cut = data[:room].decode("utf-8", "ignore")
    cut = cut[:max(0, cut.rfind("\n"))]
    if cut.count("```") % 2:
        cut += "\n```"
    cut += "\n</details>" * max(0, cut.count("<details>") - cut.count("</details>"))
    return cut + note


def render_markdown(summary: dict, max_bytes: int = STEP_SUMMARY_LIMIT) -> str:
    """The Markdown summary of one analysed run, at most ``max_bytes`` bytes."""
    text = environment(False).get_template("summary.md.j2").render(**model(summary))
    return bounded(text, max_bytes)


def write_markdown(summary: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_markdown(summary), encoding="utf-8")
    os.replace(tmp, path)
    return path


def append_step_summary(summary: dict, path: str | os.PathLike | None = None,
                        limit: int = STEP_SUMMARY_LIMIT) -> Path | None:
    """Append the summary to ``$GITHUB_STEP_SUMMARY`` (or ``path``), keeping the file within
    GitHub's limit per step whatever the step wrote there before. None when not set, or
    when there is no room left for even a cut summary."""
    target = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    target = Path(target)
    used = target.stat().st_size if target.exists() else 0
    room = limit - used - 2
    if room < 1024:
        return None
    text = render_markdown(summary, max_bytes=room)
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(("\n" if used else "") + text)
    return target


__all__ = ["append_step_summary", "bounded", "render_markdown", "series", "write_markdown"]
