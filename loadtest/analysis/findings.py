"""What the checkers read: everything the analysis found in one run, as named, typed
fields (``summary.findings`` builds it; a checker reads only what it needs).

Each field has a default meaning "nothing of this kind", so a test (or a checker of a
narrower view, like the comparison of runs) builds only the fields it needs:
``Findings(autoscaling=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Findings:
    run: dict = field(default_factory=dict)            # run.json's status, stack, plan…
    totals: dict = field(default_factory=dict)         # recorded, locust, analysed, naming
    stages: list[dict] = field(default_factory=list)   # the plan's stages, measured
    segments: list[dict] = field(default_factory=list)  # stretches of constant replicas
    levels: list[dict] = field(default_factory=list)   # steady segments by replica count
    transitions: list[dict] = field(default_factory=list)  # each scale change, measured
    changes: dict = field(default_factory=dict)        # replicas added, removed, died
    deaths: list[dict] = field(default_factory=list)   # replicas that died, planned or not
    consistency: dict = field(default_factory=dict)    # the shared counter's checks' counts
    state: dict = field(default_factory=dict)          # registers, sets, lists, sessions…
    stalled: dict | None = None                        # requests that waited out the timeout
    anomalies: list = field(default_factory=list)      # where the counter went wrong
    faults: list[dict] = field(default_factory=list)   # each fault, what it caused
    autoscaling: dict | None = None                    # the autoscaler's decisions, judged
    bottleneck: dict = field(default_factory=dict)     # what limited throughput
    cpu_by_part: dict | None = None
    capacity: dict | None = None
    timeline: dict = field(default_factory=dict)       # per second, over the run
    t_min: float = 0.0
    t_max: float = 0.0
    controlled: bool = True                            # the harness ran the stack
    known_replicas: set[str] = field(default_factory=set)  # every replica it reported
    counter_absent: bool = False                       # the app has no counter by design
    expect_replicas: int | None = None                 # an external stack's expected count
    answered: list[str] = field(default_factory=list)  # replicas that answered
    planned_levels: list[int] | None = None            # a fixed plan's replica counts
    bad_parts: list = field(default_factory=list)      # record files skipped
    baseline: dict | None = None                       # --baseline's summary
