"""What each check is about: one table, read by the JUnit report (its ``classname``) and by
the words of the verdict ("Failed: shared state (…)"), so the two cannot disagree."""

from __future__ import annotations

from typing import NamedTuple


class Topic(NamedTuple):
    key: str    # scalecheck.<key> in JUnit
    words: str  # in a sentence


#: Check-name prefixes -> topic; the first that matches.
TOPICS: tuple[tuple[tuple[str, ...], Topic], ...] = (
    (("run_completed", "records_"), Topic("run", "the run's record")),
    (("counter_",), Topic("consistency", "the shared counter")),
    (("register_", "set_", "session_", "sessions_", "list_", "add_counter"),
     Topic("state", "shared state")),
    (("levels_judged", "error_rate", "unknown_rate", "latency_", "requests_stalled"),
     Topic("load", "steady load")),
    (("fairness_", "coverage_"), Topic("distribution", "spread over replicas")),
    (("scaling_efficiency",), Topic("throughput", "throughput")),
    (("unexpected_replicas", "served_after_removal", "replicas_"), Topic("stack", "replicas")),
    (("transition_",), Topic("transitions", "scale changes")),
    (("faults_", "fault_"), Topic("faults", "faults")),
    (("time_to_scale", "slo_violation", "autoscaler_"), Topic("autoscaling", "autoscaling")),
    (("regression",), Topic("regression", "against the baseline")),
)
OTHER = Topic("other", "other checks")
STATE_KEYS = ("consistency", "state")


def topic_of(check_name: str) -> Topic:
    return next((t for prefixes, t in TOPICS if check_name.startswith(prefixes)), OTHER)
