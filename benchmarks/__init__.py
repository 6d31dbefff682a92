"""Benchmarks: figures printed, not timed tests. Run with ``make bench``."""
