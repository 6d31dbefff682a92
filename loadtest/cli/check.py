"""``scalecheck check``: a load test and its verdict in one command, for a merge gate.

    scalecheck check [locust options] [--baseline RUN_DIR] [--junit F] [--markdown F]
                     [-- analysis options]

Runs Locust headless with the given options (locustfile ``loadtest/hello.py``
unless ``-f`` names another; ``--run-dir`` chosen here when not given), then
the analysis of that run, and exits as ``analyze.py`` does: 0 pass, 1 fail,
3 inconclusive, 2 bad input or usage. Options after ``--`` go to the analysis
(thresholds, ``--balance-policy``, ``--allow-unchecked``, ...).

Locust's own exit code: 1 (some requests failed) is left to the verdict, which
judges errors against its thresholds; any other non-zero code from a run that
recorded something (3 from locust-plugins' ``--check-*`` options) means the
user's own checks failed: the exit code is then 1, never 3, which would read
as *inconclusive*.

Interruption (Ctrl-C, SIGTERM from CI's cancel or ``timeout``): the signal is
passed on to Locust, which stops its users, flushes the records and completes
run.json (status ``interrupted``); then what was recorded is analysed, so the
JUnit, Markdown and report say what ran and why it is not a pass, and the exit
code is 130 (SIGINT) or 143 (SIGTERM) whatever the verdict: a cancelled job
must read as cancelled. A second signal during that analysis ends it at once,
with the same exit code.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from loadtest.analysis.cli import main as analyze
from loadtest.contract.rundir import choose_run_dir

HELLO = Path(__file__).resolve().parents[1] / "hello.py"
USAGE_EXIT = 2
INTERRUPT_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
PROG = "scalecheck check"


class _Interrupted(BaseException):
    """A signal during the analysis (BaseException: no ``except Exception`` swallows it)."""


def split_args(argv: list[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    """(our options, Locust's arguments, the analysis' arguments after ``--``)."""
    argv = list(argv)
    analysis: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, analysis = argv[:at], argv[at + 1:]
    ours = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False)
    ours.add_argument("--baseline", type=Path)
    ours.add_argument("--junit", type=Path)
    ours.add_argument("--markdown", type=Path)
    ours.add_argument("-h", "--help", action="store_true")
    known, locust = ours.parse_known_args(argv)
    return known, locust, analysis


def _value(args: list[str], *names: str) -> str | None:
    """The value of a Locust option (``--x V`` or ``--x=V``), if given."""
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "=") and name.startswith("--"):
                return arg.split("=", 1)[1]
    return None


def locust_command(locust: str, args: list[str], run_dir: Path) -> list[str]:
    """Locust's command line: our locustfile unless one is named, headless, the run dir."""
    cmd = [locust]
    if _value(args, "-f", "--locustfile") is None:
        cmd += ["-f", str(HELLO)]
    cmd += list(args)
    if "--headless" not in args:
        cmd.append("--headless")
    if _value(args, "--run-dir") is None:
        cmd += ["--run-dir", str(run_dir)]
    return cmd


def find_locust() -> str | None:
    beside = Path(sys.executable).parent / "locust"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("locust")


def _child_setup() -> None:
    """In Locust's process: its own process group (our forwarding is the only signal it
    gets, not a second one from the terminal), and ended if we die."""
    os.setpgrp()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    known, locust_args, analysis_args = split_args(sys.argv[1:] if argv is None else argv)
    if known.help:
        print(__doc__.strip())
        return 0
    if "--worker" in locust_args:
        print(f"{PROG}: error: --worker: run check on the master (or alone)", file=sys.stderr)
        return USAGE_EXIT
    locust = find_locust()
    if locust is None:
        print(f"{PROG}: error: locust is not installed next to this Python nor on PATH: "
              "pip install locust", file=sys.stderr)
        return USAGE_EXIT

    run_dir = Path(_value(locust_args, "--run-dir") or choose_run_dir(""))
    cmd = locust_command(locust, locust_args, run_dir)
    got: list[int] = []

    def forward(signum, _frame):
        got.append(signum)
        try:
            child.send_signal(signum)
        except (ProcessLookupError, NameError):
            pass

    old = {s: signal.signal(s, forward) for s in INTERRUPT_EXIT}
    try:
        try:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        except OSError as exc:
            print(f"{PROG}: error: cannot start {locust}: {exc.strerror or exc}",
                  file=sys.stderr)
            return USAGE_EXIT
        code = child.wait()
        return _after(code, got, run_dir, known, analysis_args)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _after(code: int, got: list[int], run_dir: Path, known: argparse.Namespace,
           analysis_args: list[str]) -> int:
    """Locust has ended: analyse what it recorded and choose the exit code."""
    interrupted = INTERRUPT_EXIT[got[0]] if got else None
    if not (run_dir / "run.json").is_file():
        if interrupted:
            return interrupted
        print(f"{PROG}: error: Locust recorded no run (exit {code}); see its message above",
              file=sys.stderr)
        return code if code > 0 else USAGE_EXIT
    if code == 1:
        print(f"{PROG}: Locust exited 1 (some requests failed): the verdict judges errors "
              "against its thresholds", file=sys.stderr)
    verdict = _analyse(run_dir, known, analysis_args)
    if interrupted:
        return interrupted
    if code in INTERRUPT_EXIT.values():  # Locust itself was interrupted
        return code
    if code not in (0, 1, USAGE_EXIT) and verdict in (0, 3):
        print(f"{PROG}: Locust exited {code}: its own checks failed (locust-plugins' "
              "--check-* exit 3): fail", file=sys.stderr)
        return 1
    return verdict


def _analyse(run_dir: Path, known: argparse.Namespace, extra: list[str]) -> int:
    """The analysis of the run, as analyze.py; a signal during it ends it at once."""
    args = [str(run_dir), *extra]
    for name in ("baseline", "junit", "markdown"):
        if getattr(known, name) is not None:
            args += [f"--{name}", str(getattr(known, name))]

    def stop(signum, _frame):
        raise _Interrupted(signum)

    old = {s: signal.signal(s, stop) for s in INTERRUPT_EXIT}
    try:
        return analyze(args, prog=PROG)
    except _Interrupted as exc:
        signum = exc.args[0]
        print(f"{PROG}: analysis interrupted", file=sys.stderr)
        return INTERRUPT_EXIT[signum]
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
