#!/usr/bin/env python3
"""Analyse a recorded run (see ``loadtest.analysis.cli``).

    python analyze.py                      # reports/latest
    python analyze.py RUN_DIR [--baseline OTHER_RUN_DIR] [thresholds...]

Exit code: 0 pass, 1 fail, 3 inconclusive, 2 bad input or usage.
"""

from __future__ import annotations

import sys

# Python puts this script's own folder first on sys.path, so ``loadtest`` imports from
# anywhere (and from the install): no sys.path edit of ours.
from loadtest.analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())
