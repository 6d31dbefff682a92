"""Locust's own count of requests, kept whole across its statistics resets (the web UI's
button, ``--reset-stats``), to compare with the records."""

from __future__ import annotations

from locust.runners import MasterRunner


class LocustCounts:
    def __init__(self, environment, runner, collector) -> None:
        self.environment, self.runner, self.collector = environment, runner, collector
        self.discarded = 0  # requests Locust forgot when its stats were reset
        environment.events.reset_stats.add_listener(self._on_reset_stats)
        environment.events.spawning_complete.add_listener(self._on_spawning_complete)

    @property
    def reset_partial(self) -> bool:
        """With workers, --reset-stats makes Locust's count partial: not comparable."""
        return isinstance(self.runner, MasterRunner) and bool(
            getattr(self.environment.parsed_options, "reset_stats", False))

    def total(self) -> int:
        return self.environment.stats.total.num_requests + self.discarded

    def _on_reset_stats(self, **_kwargs) -> None:
        """The web UI's "reset stats": keep Locust's count whole for the comparison."""
        self.discarded += self.environment.stats.total.num_requests

    def _on_spawning_complete(self, **_kwargs) -> None:
        """--reset-stats: Locust has just reset its statistics (its own listener runs
        first); add back what it forgot, which is what we saw until now."""
        if getattr(self.environment.parsed_options, "reset_stats", False) and \
                not isinstance(self.runner, MasterRunner):
            self.discarded += max(0, self.collector.seen -
                                  self.environment.stats.total.num_requests)
