"""Did the load generator's users stall? Requests that waited out the run's request
timeout, or were still waiting when the run stopped its users.

A request stopped in flight at the end counts only when it had waited through the end's
grace (``STOP_GRACE_S``): one a user sent as the run stopped is merely cut short.

A hung replica (an app that accepts and never answers, or answers a request in a
minute) does not make requests fail fast: it holds the users that sent them. In a closed
model the load then quietly collapses while every answer that does come back looks
fine. Each such request is recorded with no answer (status 0) and the time it waited;
here they are counted, by replica, with the first few as examples.
"""

from __future__ import annotations

import numpy as np

from loadtest.analysis.outcomes import matches
from loadtest.analysis.passes import Accumulator, Chunk
from loadtest.contract.events import STOP_GRACE_S

STOPPED = "StoppedInFlight"
EXAMPLES = 5
#: A request that waited this share of the timeout with no answer waited it out (the
#: timeout fires a few ms either side of its nominal time).
TIMEOUT_SHARE = 0.98


class StalledRequests(Accumulator):
    """Counts, over every record, the requests that got no answer within the request
    timeout (``timeout_s``; None: the run did not say, only stops are counted)."""

    def __init__(self, timeout_s: float | None, t0: float) -> None:
        self.limit_ms = timeout_s * 1000 * TIMEOUT_SHARE if timeout_s else None
        self.grace_ms = min(timeout_s or STOP_GRACE_S, STOP_GRACE_S) * 1000 * TIMEOUT_SHARE
        self.t0 = t0
        self.count = 0
        self.stopped = 0
        self.by_replica: dict[str, int] = {}
        self.examples: list[dict] = []

    def add(self, chunk: Chunk) -> None:
        no_answer = chunk.status == 0
        if not no_answer.any():
            return
        # Stopped at the end after waiting out the end's grace: it would have stalled its
        # user. One sent during that grace (a user starting anew as the run stopped) would
        # not: killed after a few ms, it is in flight, not stalled.
        stopped = no_answer & matches(chunk.df["error"], STOPPED) & \
            (chunk.latency >= self.grace_ms)
        stalled = stopped.copy()
        if self.limit_ms is not None:
            stalled |= no_answer & (chunk.latency >= self.limit_ms)
        if not stalled.any():
            return
        self.count += int(stalled.sum())
        self.stopped += int(stopped.sum())
        for code in chunk.host_codes[stalled]:
            name = chunk.host_names[code] if code >= 0 else "(not named)"
            self.by_replica[name] = self.by_replica.get(name, 0) + 1
        for i in np.flatnonzero(stalled)[:EXAMPLES - len(self.examples)]:
            code = chunk.host_codes[i]
            self.examples.append({
                "replica": chunk.host_names[code] if code >= 0 else None,
                "at_s": round(float(chunk.t_start[i]) - self.t0, 3),
                "waited_s": round(float(chunk.latency[i]) / 1000, 3),
                "how": "stopped in flight" if stopped[i] else "timed out"})

    def result(self) -> dict:
        return {"count": self.count, "stopped_in_flight": self.stopped,
                "timed_out": self.count - self.stopped,
                "timeout_s": None if self.limit_ms is None
                else round(self.limit_ms / 1000 / TIMEOUT_SHARE, 3),
                "by_replica": dict(sorted(self.by_replica.items(), key=lambda kv: -kv[1])),
                "examples": self.examples}
