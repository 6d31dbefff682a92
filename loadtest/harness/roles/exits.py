"""How the harness leaves, when it must: one line for the user and an exit code."""

from __future__ import annotations

import sys


def fail(message: str, code: int = 2) -> None:
    """One line for the user, then exit: bad input never shows a traceback."""
    print(f"scalecheck: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)
