"""A worker of a distributed run: records requests and sends them to the master; in the
open model it also dispatches its share of the arrivals."""

from __future__ import annotations

import logging
import os
import signal
import time

import psutil

from loadtest.contract.plan import LoadProfile
from loadtest.harness import options as harness_options
from loadtest.harness.arrivals import ArrivalDispatcher, ArrivalSchedule
from loadtest.harness.collector import Collector
from loadtest.stack import processes

log = logging.getLogger("scalecheck")
MSG_STAGE = "scalecheck_stage"
MSG_ARRIVALS = "scalecheck_arrivals"


class WorkerRole:
    def __init__(self, environment, runner, options) -> None:
        self.environment = environment
        self.runner = runner
        self.options = options
        self.arrivals: ArrivalDispatcher | None = None
        self.collector: Collector | None = None

    def setup(self) -> None:
        tie_forked_worker_to_master()
        opts = self.options
        self.collector = Collector(self.environment, opts.hostname_field, opts.counter_field,
                                   writer=None, worker=self.runner.client_id)
        self.runner.register_message(MSG_STAGE, self._on_stage)
        self.runner.register_message(MSG_ARRIVALS, self._on_arrivals)

    def test_start(self) -> None:
        # The master's options reached us with its spawn message: follow them.
        try:
            opts = harness_options.validate(self.environment.parsed_options, check_dir=False)
            self.collector.set_fields(opts.hostname_field, opts.counter_field)
            if opts.load_model == "open" and self.arrivals is None:
                self.arrivals = pending_dispatcher(self.collector)  # users wait for the rate
        except harness_options.UsageError as exc:
            log.error("scalecheck: worker: %s", exc)
        self.collector.start()

    def tick(self) -> None:
        return None  # the master's shape decides

    def test_stop(self) -> None:
        if self.arrivals is not None:
            self.arrivals.stop()
        self.collector.flush()  # sent before "client_stopped", so the master has it all

    def quit(self) -> None:
        if self.arrivals is not None:
            self.arrivals.stop()
        self.collector.stop()

    def _on_stage(self, environment=None, msg=None, **_kwargs) -> None:
        self.collector.stage = (msg.data["index"], msg.data["level"])

    def _on_arrivals(self, environment=None, msg=None, **_kwargs) -> None:
        data = msg.data
        profile = LoadProfile("open", tuple(tuple(p) for p in data["points"]))
        if self.arrivals is None:
            self.arrivals = pending_dispatcher(self.collector)
        self.arrivals.stop()
        # The same dispatcher (users may already wait on it), now with its schedule.
        self.arrivals.schedule = ArrivalSchedule(profile, data["share"])
        self.arrivals.t0 = data["t0"]
        self.arrivals.start()


def pending_dispatcher(collector: Collector) -> ArrivalDispatcher:
    """A dispatcher users can wait on before the master has sent the rate."""
    return ArrivalDispatcher(ArrivalSchedule(LoadProfile("open", ((0.0, 0.0), (1.0, 0.0)))),
                             time.time(), collector.count_dropped)


def tie_forked_worker_to_master() -> None:
    """A worker forked by ``--processes`` dies with its master, even a master killed by
    SIGKILL (they outlived it by a minute, at full CPU, starving the stack's shutdown). A
    worker started on its own (``--worker``, perhaps on another machine) is left alone."""
    try:
        me = psutil.Process()
        parent = me.parent()
        if parent is None or parent.cmdline() != me.cmdline():
            return
    except psutil.Error:
        return
    processes.die_with_parent(signal.SIGKILL)
    if os.getppid() != parent.pid:  # the master died before the signal was set
        os._exit(1)
