"""The run's contract: what a run writes and the analysis reads (event names and payloads,
the record schema, the plan, run.json, durations, the wire headers). Imports nothing
else of the harness."""
