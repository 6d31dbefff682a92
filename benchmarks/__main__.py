"""make bench: what scalecheck costs and how fast the stacks react, with figures.

    python -m benchmarks [analysis] [collector] [scaleup] [balancers] [compose] [arrivals]
                         [autoscaler] [soak] [ci] [sampler] [state] [transitions]
                         [kubernetes] [hpa] [--large]

Every comparison is a ratio measured in the same run (these machines are shared and
noisy); absolute numbers are printed for the record only. With no names, all run
(compose only where a Docker engine answers). Each section is a module,
benchmarks/SECTION.py (its docstring says what it measures and its target); --large
adds 4 and 10 million requests to the analysis.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from benchmarks.common import docker_answers

# section -> the function of its module, benchmarks/<section>.py, that runs it
SECTIONS = {
    "analysis": "bench_analysis",
    "collector": "bench_collector",
    "scaleup": "bench_scaleup",
    "balancers": "bench_balancers",
    "compose": "bench_compose",
    "arrivals": "bench_arrivals",
    "autoscaler": "bench_autoscaler",
    "soak": "bench_soak",
    "ci": "bench_baseline_noise",
    "sampler": "bench_sampler",
    "state": "bench_state",
    "transitions": "bench_transitions",
    "kubernetes": "bench_kubernetes",
    "hpa": "bench_hpa",
}


def section(name: str) -> Callable[..., object]:
    """The function that runs a section, its module imported only now."""
    return getattr(importlib.import_module(f"benchmarks.{name}"), SECTIONS[name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="*", metavar="SECTION",
                        help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--large", action="store_true",
                        help="also analyse 4,000,000 and 10,000,000 requests")
    args = parser.parse_args(argv)
    unknown = [w for w in args.which if w not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(SECTIONS)}")
    which = args.which or list(SECTIONS)
    for name in which:
        if name == "analysis":
            section(name)(args.large)
        elif name == "compose" and not docker_answers():
            print("== compose: skipped: no Docker engine answers (start dockerd; "
                  "make docker-images)")
        else:
            section(name)()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
