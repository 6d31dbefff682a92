"""The controller of a distributed run (``--master``, ``--processes``): workers send their
records; the master tells them the stage and, in the open model, their share of the
arrivals, and makes sure none outlives it."""

from __future__ import annotations

import os
import signal
import time

import gevent
import psutil

from loadtest.harness.collector import MSG_RECORDS
from loadtest.harness.roles.controller import ControllerRole
from loadtest.harness.roles.worker import MSG_ARRIVALS, MSG_STAGE


class MasterRole(ControllerRole):
    writer_prefix = "master"

    def test_start(self) -> None:
        self._workers = set(self.runner.clients.keys())
        super().test_start()

    def register_messages(self) -> None:
        self.runner.register_message(MSG_RECORDS, self.collector.on_records_message)

    def announce(self, index: int, level: int) -> None:
        super().announce(index, level)
        self.runner.send_message(MSG_STAGE, {"index": index, "level": level})

    def start_arrivals(self) -> None:
        workers = max(1, self.runner.worker_count)
        for client_id in list(self.runner.clients.keys()):
            self.runner.send_message(MSG_ARRIVALS, {
                "points": [list(p) for p in self.plan.load.points], "share": 1.0 / workers,
                "t0": self.t0}, client_id=client_id)

    def await_records(self, quiet: float = 0.5, limit: float = 8.0) -> None:
        """Wait, bounded, for the workers' last records and their last stats report, then
        tell each worker to quit.

        Records arrive before each worker's 'client_stopped'; Locust's own counts arrive
        with the workers' periodic stats report (every 3 s): both must be in before totals
        are taken. Locust's master forgets a worker once it reports it stopped, and would
        quit without telling it: the worker would then wait 60 s for a heartbeat."""
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            received = sum(self.collector.received_from.values())
            if received == last and (self.counts.reset_partial or
                                     self.counts.total() >= received):
                break
            last = received
            gevent.sleep(quiet)
        for client_id in sorted(getattr(self, "_workers", set()) |
                                set(self.collector.received_from)):
            self.runner.send_message("quit", None, client_id=client_id)

    def quit(self) -> None:
        super().quit()
        reap_forked_workers()


def reap_forked_workers(grace: float = 3.0) -> None:
    """``--processes`` forks the workers from this process; Locust's master does not wait
    for them (its own wait treats a worker still running as gone), so they outlived it.
    They were told to quit: wait for them, bounded, then SIGTERM, then SIGKILL."""
    me = psutil.Process()
    try:
        forks = [p for p in me.children() if p.cmdline() == me.cmdline()]
    except psutil.Error:
        return
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            for proc in forks:
                try:
                    proc.send_signal(sig)
                except psutil.Error:
                    pass
        _, forks = psutil.wait_procs(forks, timeout=grace)
        if not forks:
            return
    for proc in forks:  # reap what the kernel has to give back
        try:
            os.waitpid(proc.pid, os.WNOHANG)
        except ChildProcessError:
            pass
