#!/usr/bin/env python3
"""Analyse a recorded run: distribution over replicas, throughput and latency per
scale level and around each scale change, counter consistency, and a verdict.

    python analyze.py                      # reports/latest
    python analyze.py RUN_DIR [--baseline OTHER_RUN_DIR] [thresholds...]

Writes RUN_DIR/summary.json, RUN_DIR/report.html and RUN_DIR/figures/*.png.
Exit code: 0 every check passes, 1 a check fails, 2 bad input or usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"analyze.py: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from loadtest.analysis.thresholds import Thresholds

    parser = _Parser(prog="python analyze.py", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="reports/latest", type=Path,
                        help="run directory (default: reports/latest)")
    parser.add_argument("--baseline", type=Path, metavar="RUN_DIR",
                        help="compare against this run (e.g. the run of main) and check for "
                             "regressions")
    parser.add_argument("--no-report", action="store_true",
                        help="write summary.json only: no figures, no HTML")
    parser.add_argument("--config", type=Path, default=Path("pyproject.toml"),
                        help="pyproject.toml with a [tool.scalecheck.thresholds] table "
                             "(default: ./pyproject.toml)")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict line")
    group = parser.add_argument_group(
        "thresholds", "defaults shown; 'off' disables an optional check")
    for name in Thresholds.names():
        default = getattr(Thresholds(), name)
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                           metavar="X", help=f"{Thresholds.doc(name)} (default: {default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from loadtest.analysis import report
    from loadtest.analysis.load import AnalysisInputError, load_run
    from loadtest.analysis.summary import analyse
    from loadtest.analysis.thresholds import ThresholdError, Thresholds, resolve

    started = time.perf_counter()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"  [{time.perf_counter() - started:5.1f}s] {message}", file=sys.stderr)

    try:
        thresholds = resolve({n: getattr(args, n) for n in Thresholds.names()}, args.config)
        baseline = _baseline_summary(args.baseline, thresholds) if args.baseline else None
        progress(f"loading {args.run_dir}")
        run = load_run(args.run_dir)
    except (AnalysisInputError, ThresholdError) as exc:
        print(f"analyze.py: error: {exc}", file=sys.stderr)
        return 2
    analysis = analyse(run, thresholds, baseline, progress)
    out = run.path
    (out / "summary.json").write_text(json.dumps(analysis.summary, indent=1, default=_plain))
    if not args.no_report:
        progress("figures and report")
        images = report.figures(analysis, out / "figures")
        (out / "report.html").write_text(report.render_html(analysis, images))
    if args.quiet:
        print(f"verdict: {analysis.summary['verdict'].upper()}")
    else:
        print(report.terminal(analysis.summary))
        written = "summary.json" + ("" if args.no_report else ", report.html, figures/")
        print(f"wrote {written} in {out} ({time.perf_counter() - started:.1f}s)")
    return 0 if analysis.summary["verdict"] == "pass" else 1


def _baseline_summary(path: Path, thresholds) -> dict:
    """The baseline's summary.json, or analyse the baseline run if it has none."""
    from loadtest.analysis.load import AnalysisInputError, load_run
    from loadtest.analysis.summary import analyse

    summary = path / "summary.json"
    if summary.is_file():
        try:
            return json.loads(summary.read_text())
        except ValueError:
            pass
    try:
        return analyse(load_run(path), thresholds).summary
    except AnalysisInputError as exc:
        raise AnalysisInputError(f"baseline: {exc}") from None


def _plain(value):
    """JSON for numpy scalars."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("analyze.py: interrupted", file=sys.stderr)
        sys.exit(130)
