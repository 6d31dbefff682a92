"""The command line over the analysis: ``python analyze.py`` and ``scalecheck analyze``.

Exit codes: 0 pass, 1 fail, 3 inconclusive (a check that applies could not
be made, or the run did not complete), 2 bad input or usage.

The modules that read and draw a run (load, summary, report, figures, side_by_side, and
distribution under them) bring pandas, pyarrow, numpy and matplotlib, about a second:
they are imported in the function that needs them, so that ``--help``, a usage error and
``scalecheck check``'s start answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from loadtest.analysis.checks import EXIT_CODES
from loadtest.analysis.junit import write_junit
from loadtest.analysis.markdown import append_step_summary, write_markdown
from loadtest.analysis.thresholds import ThresholdError, Thresholds, resolve
from loadtest.contract.names import add_renamed

USAGE_EXIT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


DESCRIPTION = """Analyse a recorded run: distribution over replicas, throughput and latency
per replica count and around each scale change and fault, counter consistency,
autoscaling, and a verdict.

Writes RUN_DIR/summary.json, RUN_DIR/report.html and RUN_DIR/figures/*.png (or into
--out DIR). Where they cannot be written, the verdict is still printed, and one line
says what was not written.
Exit code: 0 pass, 1 fail, 3 inconclusive, 2 bad input or usage."""


def build_parser(prog: str = "python analyze.py") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", default="reports/latest", type=Path,
                        help="run directory (default: reports/latest)")
    parser.add_argument("--baseline", type=Path, metavar="RUN_DIR",
                        help="compare against this run (e.g. the run of main) and check for "
                             "regressions")
    add_renamed(parser.add_argument, "--balance-policy", old=["--balance"],
                dest="balance_policy", default="roundrobin", metavar="POLICY",
                help="the policy the balancer should follow, judged: roundrobin (on "
                     "requests), leastconn (on busy time) or weights:NAME=W,... (against "
                     "those shares) (default: roundrobin; --balance, its old name, works "
                     "for one release)")
    parser.add_argument("--allow-unchecked", default="", metavar="NAME,...",
                        help="checks to accept as not applicable when they cannot be made "
                             "(e.g. counter_lost_increments on an app whose counter cannot be "
                             "read)")
    parser.add_argument("--expect-replicas", type=int, default=None, metavar="N",
                        help="--stack external: how many replicas should have answered")
    parser.add_argument("--skip-bad-parts", action="store_true",
                        help="analyse the readable record files and name the others; the "
                             "verdict is then at best inconclusive")
    parser.add_argument("--no-report", action="store_true",
                        help="write summary.json only: no figures, no HTML")
    parser.add_argument("--config", type=Path, default=None,
                        help="pyproject.toml with a [tool.scalecheck.thresholds] table "
                             "(default: ./pyproject.toml, if there is one)")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict line")
    ci = parser.add_argument_group(
        "CI outputs", "also appended to $GITHUB_STEP_SUMMARY when it is set (GitHub Actions)")
    ci.add_argument("--junit", type=Path, metavar="FILE",
                    help="write the checks as a JUnit XML report (one test case per check; "
                         "not checked = <error>, not applicable = <skipped>)")
    ci.add_argument("--markdown", type=Path, metavar="FILE",
                    help="write a GitHub-flavoured Markdown summary (verdict, table, failing "
                         "and not-checked checks, Mermaid charts)")
    ci.add_argument("--compare", type=Path, nargs="+", metavar="RUN_DIR",
                    help="instead of one run: a side-by-side report of these runs (each "
                         "after the first also compared with it), compare.html and compare.md")
    ci.add_argument("--out", type=Path, metavar="DIR",
                    help="where to write summary.json, report.html and figures/ (default: "
                         "the run directory; e.g. when it is read-only); with --compare, "
                         "compare.html and compare.md (default: the first run's directory)")
    group = parser.add_argument_group(
        "thresholds", "defaults shown; 'off' disables a check whose default may be off")
    for name in Thresholds.names():
        default = getattr(Thresholds(), name)
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                           metavar="X", help=f"{Thresholds.doc(name)} (default: "
                                             f"{'off' if default is None else default})")
    return parser


def main(argv: list[str] | None = None, prog: str = "python analyze.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        if args.compare:
            return _compare(args, prog)
        return _run(args, prog)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # malformed input we did not foresee: one line, never a traceback
        if os.environ.get("SCALECHECK_DEBUG"):
            raise
        print(f"{prog}: error: cannot analyse {args.run_dir}: {type(exc).__name__}: "
              f"{str(exc)[:200]} (SCALECHECK_DEBUG=1 shows where)", file=sys.stderr)
        return USAGE_EXIT


def _run(args, prog: str) -> int:
    from loadtest.analysis import report, view
    from loadtest.analysis.distribution import BalanceError, parse_balance
    from loadtest.analysis.load import AnalysisInputError, load_run
    from loadtest.analysis.summary import Settings, analyse

    started = time.perf_counter()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"  [{time.perf_counter() - started:5.1f}s] {message}", file=sys.stderr)

    try:
        thresholds = resolve({n: getattr(args, n) for n in Thresholds.names()},
                             args.config or Path("pyproject.toml"),
                             required=args.config is not None)
        policy, weights = parse_balance(args.balance_policy)
        if args.expect_replicas is not None and args.expect_replicas < 1:
            raise ThresholdError("--expect-replicas must be 1 or more")
        settings = Settings(balance=policy, weights=weights,
                            allow_unchecked={n.strip() for n in args.allow_unchecked.split(",")
                                             if n.strip()},
                            expect_replicas=args.expect_replicas)
        baseline = _baseline_summary(args.baseline, thresholds) if args.baseline else None
        progress(f"loading {args.run_dir}")
        run = load_run(args.run_dir, skip_bad_parts=args.skip_bad_parts)
    except (AnalysisInputError, ThresholdError, BalanceError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    for bad in run.bad_parts:
        print(f"{prog}: skipped {bad}", file=sys.stderr)
    try:
        analysis = analyse(run, thresholds, baseline, progress, settings)
    except AnalysisInputError as exc:  # found while reading the records
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    summary = analysis.summary
    for name in summary["settings"]["unknown_allow_unchecked"]:
        print(f"{prog}: warning: --allow-unchecked {name}: no such check", file=sys.stderr)
    out = args.out or run.path
    not_written = _write_outputs(analysis, out, args, progress)
    ci_written = _ci_outputs(summary, args, prog)
    # The verdict is said even where nothing could be written (an artifact on a read-only
    # mount): it was computed, and it is what the reader came for.
    if args.quiet:
        print(view.verdict_line(summary))
    else:
        print(report.terminal(summary))
        if not not_written:
            written = "summary.json" + ("" if args.no_report else ", report.html, figures/")
            print(f"wrote {written} in {out} ({time.perf_counter() - started:.1f}s)")
    if not_written:
        print(f"{prog}: {'error' if args.out else 'warning'}: {not_written}", file=sys.stderr)
    if not ci_written or (not_written and args.out):
        return USAGE_EXIT  # an output asked for by name is missing
    return EXIT_CODES[summary["verdict"]]


def _write_outputs(analysis, out: Path, args, progress) -> str | None:
    """summary.json, report.html and figures/ in ``out``; what could not be written, in one
    phrase, or None."""
    from loadtest.analysis import report

    summary = analysis.summary
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_plain))
        if not args.no_report:
            progress("figures and report")
            from loadtest.analysis import figures

            images = figures.figures(analysis, out / "figures")
            (out / "report.html").write_text(report.render_html(analysis, images))
    except OSError as exc:
        names = "summary.json" + ("" if args.no_report else ", report.html and figures/")
        hint = "" if args.out else " (--out DIR writes them elsewhere)"
        return f"could not write {names} in {out}: {exc.strerror or exc}{hint}"
    return None


def _ci_outputs(summary: dict, args, prog: str) -> bool:
    """--junit, --markdown and $GITHUB_STEP_SUMMARY; False (said in one line) if one cannot
    be written."""
    target = None
    try:
        if args.junit:
            target = args.junit
            write_junit(summary, args.junit)
        if args.markdown:
            target = args.markdown
            write_markdown(summary, args.markdown)
        target = os.environ.get("GITHUB_STEP_SUMMARY") or None
        if target and append_step_summary(summary) is None:
            print(f"{prog}: warning: $GITHUB_STEP_SUMMARY is full (GitHub's 1 MiB per step): "
                  "summary not appended", file=sys.stderr)
    except OSError as exc:
        print(f"{prog}: error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def _compare(args, prog: str) -> int:
    """--compare RUN_A RUN_B ...: compare.html and compare.md side by side."""
    from loadtest.analysis.load import AnalysisInputError
    from loadtest.analysis.side_by_side import (
        render_compare_html,
        render_compare_markdown,
        side_by_side,
    )

    try:
        thresholds = resolve({n: getattr(args, n) for n in Thresholds.names()},
                             args.config or Path("pyproject.toml"),
                             required=args.config is not None)
        summaries = [_baseline_summary(p, thresholds, label="") for p in args.compare]
    except (AnalysisInputError, ThresholdError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    names = [p.resolve().name if p.name in ("latest", "", ".") else p.name for p in args.compare]
    if len(set(names)) < len(names):  # the same folder name under different parents
        names = [str(p) for p in args.compare]
    model = side_by_side(summaries, names)
    out = args.out or args.compare[0]
    try:
        out.mkdir(parents=True, exist_ok=True)
        if model["timelines"]:
            from loadtest.analysis.figures import replica_timelines_figure

            replica_timelines_figure(model["timelines"], out / "compare_replicas.png")
            model["timelines_png"] = True
        (out / "compare.html").write_text(render_compare_html(model))
        (out / "compare.md").write_text(render_compare_markdown(model))
    except OSError as exc:
        print(f"{prog}: error: cannot write into {out}: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_EXIT
    if not args.quiet:
        for run in model["runs"]:
            print(f"{run['name']}: {(run['verdict'] or '?').upper()}")
        for other in model["against_first"]:
            for line in other["lines"]:
                print(f"{other['name']} against {model['first']}: {line}")
    for other in (model["timelines"] or {}).get("against_first", []):
        print(f"{other['name']} against {model['timelines']['first']}: replicas differ by at "
              f"most {other['max_abs_diff']} (at {other['max_abs_diff_at_s']} s), "
              f"{other['max_abs_diff_outside_settle']} outside {other['settle_s']:g} s after "
              f"each change; replica-seconds {other['replica_seconds'][1]} vs "
              f"{other['replica_seconds'][0]}")
    print(f"wrote compare.html, compare.md{', compare_replicas.png' if model['timelines'] else ''}"
          f" in {out}")
    return 0


def _baseline_summary(path: Path, thresholds, label: str = "baseline") -> dict:
    """The baseline's summary.json, or analyse the baseline run if it has none."""
    from loadtest.analysis.load import AnalysisInputError, load_run
    from loadtest.analysis.summary import analyse

    summary = path / "summary.json"
    if summary.is_file():
        try:
            data = json.loads(summary.read_text())
            if isinstance(data, dict) and (data.get("levels") or data.get("stages")):
                return data
        except ValueError:
            pass
    try:
        return analyse(load_run(path), thresholds).summary
    except AnalysisInputError as exc:
        raise AnalysisInputError(f"{label}: {exc}" if label else str(exc)) from None


def _plain(value):
    """JSON for numpy scalars."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set):
        return sorted(value)
    return str(value)
