"""The shape: asks the run plan for the load now.

Locust polls ``tick()`` every second. The plan answers with the users (and
spawn rate) for this moment, or None once the run is over; scale changes,
the autoscaler and faults are the conductor's business, not the shape's.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest import harness


class PlanShape(LoadTestShape):
    use_common_options = True  # -u and -r (and the web UI's fields) set the users

    def tick(self):
        h = harness.current(self.runner.environment if self.runner else None)
        if h is None:
            return None
        return h.tick()


#: The name earlier locustfiles import; the plan's fixed levels are what it did.
ScaleLevels = PlanShape
