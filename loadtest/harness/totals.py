"""The run's totals: how many requests were recorded against how many Locust counted."""

from __future__ import annotations


def totals(recorded: int, locust_now: int, discarded: int, locust_failures: int,
           reset_stats_partial: bool = False,
           by_worker: dict[str, int] | None = None) -> dict:
    """``totals`` for run.json, from plain counts.

    ``discarded``: requests Locust forgot when its statistics were reset (the
    web UI's button, or --reset-stats in one process), added back so the
    comparison stays whole. ``reset_stats_partial``: Locust reset statistics
    we could not count (--reset-stats with workers): its count is partial and
    the comparison cannot be made.
    """
    out: dict = {"recorded": int(recorded), "locust": int(locust_now + discarded),
                 "locust_failures": int(locust_failures)}
    if discarded:
        out["locust_reset_added_back"] = int(discarded)
    if reset_stats_partial:
        out["locust"] = None
        out["note"] = "--reset-stats with workers: Locust's count is partial"
    if by_worker:
        out["by_worker"] = dict(by_worker)
    return out
