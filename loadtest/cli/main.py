"""``scalecheck``: one entry point for what the harness does outside Locust.

    scalecheck analyze [RUN_DIR] [options]   # the same as python analyze.py
    scalecheck stack up|ps|scale|logs|down   # the same as python -m loadtest.stack
    scalecheck options [--markdown]          # the harness's Locust options (as a reference)
    scalecheck run [locust options]          # locust -f loadtest/hello.py ...
    scalecheck check [locust options] [--baseline RUN_DIR] [--junit F] [--markdown F]
                                             # run, analyse, exit 0/1/3/2 (a merge gate)

Load tests run under Locust: ``locust -f loadtest/hello.py`` (or ``scalecheck run``).

Each command's module is imported once that command is chosen, and this module imports only
the standard library and the run contract: ``scalecheck run`` must say "locust is not
installed" from an interpreter that has none of the harness's dependencies, and the
harness's options import Locust, which patches the standard library with gevent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from loadtest.contract.plan import MAX_DURATION_TEXT

HELLO = Path(__file__).resolve().parents[1] / "hello.py"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "--help"
    if command == "analyze":
        from loadtest.analysis.cli import main as analyze_main

        return analyze_main(argv, prog="scalecheck analyze")
    if command == "stack":
        from loadtest.stack.cli import main as stack_main

        return stack_main(argv)
    if command == "options":
        return print_options(markdown="--markdown" in argv)
    if command == "check":
        from loadtest.cli.check import main as check_main

        return check_main(argv)
    if command == "run":
        locust = Path(sys.executable).parent / "locust"
        if not os.access(locust, os.X_OK):
            found = shutil.which("locust")
            if found is None:
                print("scalecheck: error: locust is not installed next to this Python "
                      f"({locust}) nor on PATH: pip install locust", file=sys.stderr)
                return 2
            locust = Path(found)
        try:
            os.execv(str(locust), [str(locust), "-f", str(HELLO), *argv])
        except OSError as exc:
            print(f"scalecheck: error: cannot start {locust}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
    if command in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0
    print(f"scalecheck: error: unknown command {command!r} (analyze, check, stack, options, run)",
          file=sys.stderr)
    return 2


def options_parser():
    from loadtest.harness import options  # Locust and gevent: see the module's docstring

    parser = argparse.ArgumentParser(prog="locust -f loadtest/hello.py", add_help=False,
                                     description="The harness's options (beside Locust's own, "
                                     "which `locust --help` lists).")
    options.add_arguments(parser)
    return parser


def print_options(markdown: bool = False) -> int:
    """Locust prints --help before it loads a locustfile, so it cannot list ours: we do;
    ``markdown``: the reference page (docs/reference.md is this output)."""
    parser = options_parser()
    if markdown:
        print(options_markdown(parser), end="")
    else:
        parser.print_help()
    return 0


def options_markdown(parser) -> str:
    """Every option of the parser as a Markdown table, its help text as written."""
    rows = []
    for group in parser._action_groups:  # argparse keeps no public list of groups
        for action in group._group_actions:
            if not action.option_strings:
                continue
            flags = ", ".join(f"`{f}{' ' + action.metavar if action.metavar else ''}`"
                              for f in action.option_strings)
            text = (action.help or "").replace("%%", "%").replace("|", "\\|")
            rows.append(f"| {flags} | {text} |")
    return ("# Option reference\n\n"
            "Generated from the harness's parser by `scalecheck options --markdown` (a test "
            "keeps this page equal to it). These are the harness's options; Locust's own "
            "(`-u`, `-r`, `--run-time`, `--processes`, `-H` …) are in `locust --help`. "
            f"Every duration (a TIME, the times of `--load-profile` and `--fault`, Locust's "
            f"`--run-time`) and the whole plan are at most {MAX_DURATION_TEXT}; a number must "
            "be finite; an option the run would ignore (`--scale-levels` with `--autoscale` "
            "or on `--stack external`, another backend's option …) is refused, naming the "
            "conflict.\n\n"
            "| option | meaning |\n| --- | --- |\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
