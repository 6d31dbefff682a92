"""ScaleLevels: one stage per scale level, rescaling the stack between stages.

The user count (-u, -r) stays the same across stages, so the only thing that
changes from one stage to the next is the number of replicas.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtest import harness


class ScaleLevels(LoadTestShape):
    use_common_options = True  # -u and -r (and the web UI's fields) set the users

    def __init__(self) -> None:
        super().__init__()
        self._stage = -1

    def reset_time(self) -> None:
        super().reset_time()
        self._stage = -1

    def tick(self):
        h = harness.current()
        if h is None or h.options is None:
            return None
        opts = h.options
        levels = opts.levels if h.stack is None or h.stack.controlled else [0]
        index = int(self.get_run_time() // opts.stage_time)
        if index >= len(levels):
            h.finish()
            return None
        parsed = self.runner.environment.parsed_options
        users = int(getattr(parsed, "num_users", None) or 1)
        spawn_rate = float(getattr(parsed, "spawn_rate", None) or users)
        if index != self._stage:
            self._stage = index
            h.begin_stage(index, levels[index], users)
        return users, spawn_rate
