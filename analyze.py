#!/usr/bin/env python3
"""Analyse a recorded run (see ``loadtest.analysis.cli``).

    python analyze.py                      # reports/latest
    python analyze.py RUN_DIR [--baseline OTHER_RUN_DIR] [thresholds...]

Exit code: 0 pass, 1 fail, 3 inconclusive, 2 bad input or usage.
"""

from __future__ import annotations

import os
import sys

# Run as ``python analyze.py`` from anywhere: make the package importable.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadtest.analysis.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
