"""``scalecheck``: one entry point for what the harness does outside Locust.

    scalecheck analyze [RUN_DIR] [options]   # the same as python analyze.py
    scalecheck stack up|ps|scale|logs|down   # the same as python -m loadtest.stack
    scalecheck options                       # the harness's Locust options
    scalecheck run [locust options]          # locust -f loadtest/hello.py ...
    scalecheck check [locust options] [--baseline RUN_DIR] [--junit F] [--markdown F]
                                             # run, analyse, exit 0/1/3/2 (a merge gate)

Load tests run under Locust: ``locust -f loadtest/hello.py`` (or ``scalecheck run``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HELLO = Path(__file__).resolve().parent / "hello.py"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "--help"
    if command == "analyze":
        from loadtest.analysis.cli import main as analyze

        return analyze(argv, prog="scalecheck analyze")
    if command == "stack":
        from loadtest.stack.cli import main as stack

        return stack(argv)
    if command == "options":
        return print_options()
    if command == "check":
        from loadtest.check import main as check

        return check(argv)
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


def print_options() -> int:
    """Locust prints --help before it loads a locustfile, so it cannot list ours: we do."""
    import argparse

    from loadtest import options

    parser = argparse.ArgumentParser(prog="locust -f loadtest/hello.py", add_help=False,
                                     description="The harness's options (beside Locust's own, "
                                     "which `locust --help` lists).")
    options.add_arguments(parser)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
