"""Figures of an analysis (matplotlib, PNG): throughput and latency by replica count,
over time with scale changes and faults marked, the autoscaler, the counter. Imported
only when a report is drawn: matplotlib alone takes over a second to import."""

from __future__ import annotations

import io
import json
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


def _marks(ax, summary: dict, t0: float) -> None:
    """Scale changes (dashed), transitions (orange) and faults (red) on a time axis."""
    for tr in summary["transitions"]:
        ax.axvline(tr["t_start"] - t0, color="black", lw=0.8, ls="--")
        ax.text(tr["t_start"] - t0, 1.0, f" →{tr['level']}", transform=ax.get_xaxis_transform(),
                va="bottom", fontsize=7)
        ax.axvspan(tr["t_start"] - t0, tr["t_end"] - t0, color="orange", alpha=0.2, lw=0)
    for fault in summary["faults"]:
        if fault["applied"] is None:
            continue
        end = (fault["ended"] or fault["applied"]) + (fault.get("recovery_s") or 0)
        ax.axvspan(fault["applied"] - t0, max(end, fault["applied"] + 0.3) - t0, color="red",
                   alpha=0.15, lw=0)
        ax.text(fault["applied"] - t0, 0.97, f"{fault['kind']} ",
                transform=ax.get_xaxis_transform(), fontsize=7, color="darkred",
                rotation=90, va="top", ha="right")


def figures(analysis: Analysis, out: Path) -> dict[str, bytes]:
    out.mkdir(parents=True, exist_ok=True)
    s = analysis.summary
    t0 = s["timeline"]["t0"]
    made = {}
    levels = [lv for lv in s["levels"] if lv["requests"]]
    label = lambda lv: f"{lv['level']} repl." if lv["level"] else "observed"  # noqa: E731

    if levels:
        fig, axes = plt.subplots(1, len(levels), figsize=(max(4, 3.2 * len(levels)), 3),
                                 squeeze=False)
        for ax, lv in zip(axes[0], levels):
            names = list(lv["per_replica"])
            ax.bar(names, [lv["per_replica"][n]["requests"] for n in names], color="#1f77b4")
            ax.set_title(label(lv), fontsize=9)
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        axes[0][0].set_ylabel("requests (steady segments)")
        made["distribution"] = _save(fig, out / "distribution.png")

    tl = s["timeline"]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = np.arange(tl["seconds"])
    if tl["per_hostname"]:
        ax.stackplot(x, *tl["per_hostname"].values(), labels=list(tl["per_hostname"]), step="post")
    ax.plot(x, tl["errors"], color="red", lw=1, label="errors")
    _marks(ax, s, t0)
    ax.set_xlabel("seconds since first request")
    ax.set_ylabel("requests/s")
    ax.legend(fontsize=7, ncol=8, loc="lower left", bbox_to_anchor=(0, 1.06), frameon=False)
    made["throughput"] = _save(fig, out / "throughput.png")

    if levels:
        made.update(_level_figures(levels, label, out))

    made["counter"] = _counter_figure(analysis, out / "counter.png", t0)
    if (cpu := s.get("cpu_by_part")) and cpu.get("t"):
        made["cpu"] = _cpu_figure(s, cpu, out / "cpu.png")
    violation = _first_violation(s)
    if violation is not None:
        made["state"] = _state_figure(violation, out / "state.png")
    if s.get("autoscaling"):
        made["autoscaling"] = _autoscaling_figure(s, out / "autoscaling.png")
    if "baseline" in s:
        base = {b["level"]: b for b in s["baseline"]["levels"]}
        both = [lv for lv in levels if lv["level"] in base]
        if both:
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3))
            idx = np.arange(len(both))
            a1.bar(idx - 0.2, [base[lv["level"]]["rps"] for lv in both], 0.4, label="baseline")
            a1.bar(idx + 0.2, [lv["rps"] for lv in both], 0.4, label="this run")
            a1.set_title("requests/s")
            a2.bar(idx - 0.2, [base[lv["level"]]["latency_ms"]["p99"] or 0 for lv in both], 0.4,
                   label="baseline")
            a2.bar(idx + 0.2, [lv["latency_ms"]["p99"] or 0 for lv in both], 0.4,
                   label="this run")
            a2.set_title("p99 latency, ms")
            for a in (a1, a2):
                a.set_xticks(idx, [label(lv) for lv in both])
                a.legend(fontsize=8)
            made["baseline"] = _save(fig, out / "baseline.png")
    return made


def _autoscaling_figure(s: dict, path: Path) -> bytes:
    a, tl = s["autoscaling"], s["timeline"]
    x = np.arange(tl["seconds"])
    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.step(x, a["series"]["replicas"], where="post", color="black", lw=2, label="replicas")
    if a["series"]["needed"] is not None:
        ax.step(x, a["series"]["needed"], where="post", color="green", lw=1, ls=":",
                label="needed (offered / capacity)")
    ax.set_ylabel("replicas")
    ax.set_xlabel("seconds since first request")
    ax2 = ax.twinx()
    ax2.plot(x, a["series"]["offered"], color="#1f77b4", lw=1, label="offered load, req/s")
    ax2.set_ylabel("req/s")
    ax3 = ax.twinx()
    ax3.spines["right"].set_position(("outward", 45))
    p95 = [np.nan if p is None else p for p in tl["p95_ms"]]
    ax3.plot(x, p95, color="#d62728", lw=0.8, alpha=0.7, label="p95, ms")
    if a.get("slo_p95_ms"):
        ax3.axhline(a["slo_p95_ms"], color="#d62728", ls="--", lw=0.8)
    ax3.set_ylabel("p95, ms")
    _marks(ax, s, tl["t0"])
    lines = [h for axis in (ax, ax2, ax3) for h in axis.get_legend_handles_labels()[0]]
    labels = [lb for axis in (ax, ax2, ax3) for lb in axis.get_legend_handles_labels()[1]]
    ax.legend(lines, labels, fontsize=7, loc="upper left")
    return _save(fig, path)


def replica_timelines_figure(timelines: dict, path: Path) -> bytes:
    """The compared runs' replicas in service each second, one line each, every change
    they asked marked with its level (``timelines.compare_timelines``)."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for i, run in enumerate(timelines["runs"]):
        color = f"C{i}"
        x = np.arange(len(run["replicas"]))
        ax.step(x, run["replicas"], where="post", color=color, lw=2 - 0.4 * min(i, 2),
                label=f"{run['name']} ({run['policy']})")
        for t, level in run["changes"]:
            if t >= 0:
                ax.plot([t], [level], marker="v", color=color, ms=5)
                ax.annotate(str(level), (t, level), textcoords="offset points",
                            xytext=(2, 4 + 8 * i), fontsize=7, color=color)
    ax.set_xlabel("seconds since each run's first request")
    ax.set_ylabel("replicas in service")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("replicas over time (triangles: a change asked, with its level)", fontsize=9)
    return _save(fig, path)


def _level_figures(levels: list[dict], label, out: Path) -> dict[str, bytes]:
    """Latency percentiles, then throughput and scaling efficiency, per level."""
    fig, ax = plt.subplots(figsize=(6, 3))
    keys = ["p50", "p90", "p95", "p99"]
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(np.arange(len(levels)) + i * width,
               [lv["latency_ms"][key] or 0 for lv in levels], width, label=key)
    ax.set_xticks(np.arange(len(levels)) + 0.4 - width / 2, [label(lv) for lv in levels])
    ax.set_ylabel("latency, ms")
    ax.legend(fontsize=8)
    latency = _save(fig, out / "latency.png")

    fig, ax1 = plt.subplots(figsize=(6, 3))
    ax1.bar([label(lv) for lv in levels], [lv["rps"] for lv in levels], color="#1f77b4")
    ax1.set_ylabel("requests/s (steady)")
    ax2 = ax1.twinx()
    ax2.plot([label(lv) for lv in levels],
             [lv.get("scaling_efficiency") or np.nan for lv in levels],
             color="#ff7f0e", marker="o")
    ax2.set_ylabel("scaling efficiency")
    ax2.set_ylim(0, 1.2)
    return {"latency": latency, "scaling": _save(fig, out / "scaling.png")}


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
    _marks(ax, analysis.summary, t0)
    ax.set_xlabel("seconds since first request")
    ax.set_ylabel("counter value seen")
    ax.legend(fontsize=7, ncol=6, loc="upper left", markerscale=2)
    return _save(fig, path)


def _cpu_figure(s: dict, cpu: dict, path: Path) -> bytes:
    """CPU by part over time, stacked, against the machine's cores: which part had the
    cores when throughput stopped growing."""
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = np.asarray(cpu["t"], dtype=float)
    names = [n for n in ("generator", "balancer", "store", "replicas") if cpu.get(n)]
    series = [np.nan_to_num(np.asarray(cpu[n], dtype=float)) for n in names]
    ax.stackplot(x, *series, labels=[f"{n}" for n in names], alpha=0.8)
    if cpu.get("cores"):
        ax.axhline(cpu["cores"], color="black", lw=1, ls="--", label="the machine's cores")
    if cpu.get("throttled"):
        ax.plot(x, np.nan_to_num(np.asarray(cpu["throttled"], dtype=float)), color="red",
                lw=1, label="replicas throttled, s/s")
    _marks(ax, s, s["timeline"]["t0"])
    ax.set_xlabel("seconds")
    ax.set_ylabel("cores")
    ax.legend(fontsize=8, loc="upper left", ncol=3)
    return _save(fig, path)


def _first_violation(s: dict) -> dict | None:
    for check in s["checks"]:
        if check["name"] == "register_linearizable" and check["status"] == "fail":
            found = (check.get("evidence") or {}).get("violations") or []
            return found[0] if found else None
    return None


def _state_figure(violation: dict, path: Path) -> bytes:
    """One key's operations around its first violation: each a bar over its real span, one
    row per operation, named on the left (client, what it did, replica, HTTP status), so
    no label can run into another; the operation no order explains in red."""
    ops = sorted(violation.get("ops") or [], key=lambda o: (o["t_start"], o["index"]))
    bad = (violation.get("op") or {}).get("index")
    fig, ax = plt.subplots(figsize=(10, 0.8 + 0.32 * max(1, len(ops))))
    labels = []
    for y, o in enumerate(ops):
        red = o["index"] == bad
        unknown = o["outcome"] == "unknown"
        end = o["t_end"] if not unknown else max(o["t_end"], o["t_start"] + 0.05)
        ax.barh(y, max(end - o["t_start"], 1e-3), left=o["t_start"], height=0.6,
                color="#d62728" if red else ("#1f77b4" if o["f"] in ("write", "cas")
                                             else "#7f7f7f"),
                hatch="//" if unknown else None, alpha=0.5 if o["outcome"] == "fail" else 1)
        labels.append(_op_label(o))
    ax.set_yticks(range(len(ops)), labels, fontsize=7)
    ax.invert_yaxis()  # the first operation on top, as the text reads
    ax.set_xlabel(f"seconds from the first operation (key {violation.get('key')}); hatched: "
                  "outcome unknown, pale: no effect")
    return _save(fig, path)


def _op_label(o: dict) -> str:
    """An operation in a few words: ``local/3 write "v1" · hello-2 · 200``."""
    shown = o["seen"] if o["f"] == "read" else o["value"]
    text = json.dumps(shown, ensure_ascii=False, default=str)
    if len(text) > 24:
        text = text[:23] + "…"
    if o["f"] == "cas" and o["outcome"] == "ok":
        text += " swapped" if o["seen"] is not False else " compare failed"
    status = o["status"] or "no answer"
    return f"{o['process']} {o['f']} {text} · {o['replica'] or '?'} · {status}"
