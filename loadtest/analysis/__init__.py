"""Analysis of a recorded run: one module per question, records in, plain data out.

- ``load``: read a run directory (run.json + requests/) into a table.
- ``windows``: each stage's steady window and each scale change's transition.
- ``distribution``: how requests spread over the replicas that were up.
- ``throughput``: requests/s, latency and errors per stage and over time.
- ``consistency``: did the shared counter stay consistent (Jepsen-style).
- ``verdict``: named checks against thresholds; pass only if all pass.
- ``summary``: all of the above as the summary.json contract.
- ``report``: figures and the HTML page, drawn from the summary's data.
"""
