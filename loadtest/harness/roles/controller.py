"""The controller of a run (a local runner; ``MasterRole`` for ``--master``/``--processes``):
it owns the plan, the stack, the run's record and its files. It delegates each concern
to a part of its own:

- start: ``SignalGate`` (Ctrl-C and SIGTERM at any moment), ``startup.bring_up`` (the
  stack, interruptibly), ``RunRecord`` (the run directory, run.json), ``Collector``,
  ``LocustReports``, ``LocustCounts``;
- running: ``Conductor`` (the plan applied to the stack; the autoscaler; the faults),
  the ``CpuSampler``, the ``DiskGuard`` (room for the records; a full disk fails the run);
  the shape asks ``tick()`` for the load now;
- the end: ``ending`` (settle, conclude the record, tear down, the exit message).
"""

from __future__ import annotations

import atexit
import logging
import sys
import time

import gevent
import locust
from locust import log as locust_log

from loadtest.autoscale.cluster import ClusterObserver
from loadtest.autoscale.controller import Autoscaler
from loadtest.contract.plan import RunPlan, Target
from loadtest.contract.records import PartWriter
from loadtest.contract.rundir import RunRecord, choose_run_dir, create_run_dir
from loadtest.harness import options as harness_options
from loadtest.harness.arrivals import ArrivalDispatcher, ArrivalSchedule
from loadtest.harness.collector import Collector
from loadtest.harness.conductor import Conductor
from loadtest.harness.faults import FaultInjector
from loadtest.harness.locust_reports import LocustReports
from loadtest.harness.roles import ending
from loadtest.harness.roles.counts import LocustCounts
from loadtest.harness.roles.disk import DiskGuard
from loadtest.harness.roles.exits import fail
from loadtest.harness.roles.signals import SignalGate
from loadtest.harness.roles.startup import StartFailed, bring_up
from loadtest.harness.users import cut_short_only
from loadtest.stack import StackError, StackSettings, make_stack

log = logging.getLogger("scalecheck")


class ControllerRole:
    writer_prefix = "local"

    def __init__(self, environment, runner, options) -> None:
        self.environment = environment
        self.runner = runner
        self.options = options
        self.plan: RunPlan = options.plan
        self.record: RunRecord | None = None
        self.stack = None
        self.conductor: Conductor | None = None
        self.collector: Collector | None = None
        self.reports: LocustReports | None = None
        self.counts: LocustCounts | None = None
        self.sampler = None
        self.disk: DiskGuard | None = None
        self.arrivals: ArrivalDispatcher | None = None
        self.gate: SignalGate | None = None
        self.t0: float | None = None
        self.finished = False      # the plan ran to its end
        self.concluded = False
        self.torn_down = False
        self.fatal: str | None = None
        self._started = False
        self._last_tick: tuple[int, float] | None = None
        self.pending_words: list[str] | None = None  # the last lines, once torn down

    # -- start ------------------------------------------------------------------------

    def setup(self) -> None:
        opts = self.options
        self.gate = SignalGate()
        run_dir = choose_run_dir(opts.run_dir)
        try:
            self.stack = self._make_stack(run_dir)
        except SystemExit:
            _drop_if_empty(run_dir)  # refused before the run began: nothing to keep
            raise
        try:
            create_run_dir(run_dir)
        except OSError as exc:
            self.stack.down()
            fail(f"cannot create the run directory: {exc}")
        self.record = RunRecord(run_dir, locust_version=locust.__version__, command=sys.argv)
        self.record.set_plan(self.plan.to_dict(), opts.to_dict())
        self.record.save()
        self.collector = Collector(self.environment, opts.hostname_field, opts.counter_field,
                                   writer=PartWriter(run_dir, self.writer_prefix),
                                   worker="local", on_warning=self._warn)
        self.register_messages()
        self.counts = LocustCounts(self.environment, self.runner, self.collector)
        self.reports = LocustReports(self.environment, self.environment.parsed_options,
                                     run_dir)
        atexit.register(self.say_last_words)  # at exit handlers run last first: after quit
        atexit.register(self.quit)
        self._start_stack()
        self.conductor = Conductor(self.stack, self.plan, self.record, self.announce,
                                   self.on_fatal, replace_dead=opts.replace_dead,
                                   users_now=self._users_now)
        self._attach_autoscaler_and_faults()
        self.sampler = ending.start_sampler(self.stack, self.environment)
        self.disk = DiskGuard(run_dir, self.stack.balancer_logs,
                              [self.collector.writer, self.record], self._disk_full,
                              self._warn)
        log.info("scalecheck: recording into %s", run_dir)
        for note in self.plan.notes:
            log.warning("scalecheck: the plan was %s", note)

    def _make_stack(self, run_dir):
        opts = self.options
        settings = StackSettings(
            port=opts.stack_port, url=opts.host, balancer=opts.balancer, api_port=opts.api_port,
            run_dir=run_dir, log_dir=run_dir / "logs", workdir=run_dir / "stack",
            app_port=opts.app_port, health_path=opts.health_path, counter_read=opts.counter_read,
            ready_timeout=opts.ready_timeout, limits=opts.limits,
            options={**opts.backend_options,
                     "store_proxy": any(f.kind in ("latency", "reset") for f in self.plan.faults),
                     "cluster_autoscaler": _cluster_autoscaler(self.plan)})
        stack = None
        try:
            stack = make_stack(opts.stack, settings)
            stack.preflight()  # binaries, ports, the engine: before anything is created
        except StackError as exc:
            if stack is not None:
                stack.down()
            fail(str(exc))
        return stack

    def _start_stack(self) -> None:
        opts = self.options
        if self.stack.controlled:
            log.info("scalecheck: bringing up the %s stack (%s) with %d replica(s)",
                     opts.stack, opts.balancer, self.plan.first_level)
        else:
            log.info("scalecheck: recording against %s, which it does not control",
                     self.stack.url)
        try:
            bring_up(self.stack, self.plan.first_level, self.gate)
        except StartFailed as exc:
            self.record.data.update(status=exc.status, error=str(exc), ended=time.time())
            self.record.set_events(self.stack.events)
            self.record.save()
            self.record.release_reserve()
            self.torn_down = self.concluded = True
            fail(str(exc), exc.code)
        self.gate.release(self._set_exit_code)
        if not self.environment.host:
            self.environment.host = self.stack.url
        self.record.describe_stack(self.stack.describe(), self.environment.host)
        self.record.set_events(self.stack.events)
        self.record.mark_ready()

    def _set_exit_code(self, code: int) -> None:
        # An interrupted run never exits 0 (CI would read it as success): 130 / 143, unless
        # a failure already chose its code.
        if self.environment.process_exit_code is None:
            self.environment.process_exit_code = code

    def _attach_autoscaler_and_faults(self) -> None:
        if self.plan.autoscale is not None and self.plan.autoscale.policy == "cluster":
            self.conductor.autoscaler = ClusterObserver(self.plan.autoscale, self.stack,
                                                        self.stack.events,
                                                        self.plan.first_level)
        elif self.plan.autoscale is not None:
            self.conductor.autoscaler = Autoscaler(self.plan.autoscale, self.stack,
                                                   self.collector, self.stack.events)
        if self.plan.faults:
            self.conductor.faults = FaultInjector(self.plan.faults, self.stack,
                                                  self.stack.events, self.plan.first_level)

    def register_messages(self) -> None:
        """A master listens to its workers' records (see MasterRole)."""

    # -- the test -----------------------------------------------------------------------

    def test_start(self) -> None:
        if self._started:
            # One run directory per Locust process: a second start would mix two
            # tests' stages and records. Say so, and do not start.
            log.error("scalecheck: this Locust process already recorded a run in %s; "
                      "restart locust to record another", self.record.run_dir)
            gevent.spawn(self.runner.stop)
            return
        self._started = True
        self._keep_the_stack_s_url()
        self._reread_options()
        self._clock()
        self.collector.start()
        self.reports.start()
        self.disk.start()
        self.record.mark_running(self.read_counter())
        self.conductor.start(self.t0)
        if self.plan.open_model:
            self.start_arrivals()

    def _keep_the_stack_s_url(self) -> None:
        """The web UI's host field cannot send a harness-run stack's load elsewhere: the
        run would record requests to another server as this stack's."""
        url = self.stack.url if self.stack is not None and self.stack.controlled else None
        if url and self.environment.host != url:
            self._warn(f"the host {self.environment.host} given in the web UI is ignored: "
                       f"this run's stack is at {url}")
            self.environment.host = url

    def _clock(self) -> float:
        if self.t0 is None:
            self.t0 = time.time()
        return self.t0

    def start_arrivals(self) -> None:
        self.arrivals = ArrivalDispatcher(ArrivalSchedule(self.plan.load, 1.0), self.t0,
                                          self.collector.count_dropped)
        self.arrivals.start()

    def tick(self) -> tuple[int, float] | None:
        """For the shape: the users and spawn rate now, or None once the plan is over."""
        self._clock()
        t = self.conductor.plan_time() if self.conductor is not None and \
            self.conductor.t0 is not None else time.time() - self.t0
        if self.fatal:
            # Locust stops the users (and, headless, quits) when the shape says it is over:
            # the one way to end a test that does not race with Locust's own stopping.
            return None
        if self.concluded:
            return self._last_tick
        target: Target | None = self.plan.target(t)
        if target is None:
            self.finish()
            return None
        self._last_tick = (target.users, target.spawn_rate)
        return self._last_tick

    def _users_now(self) -> int | None:
        runner = self.environment.runner
        return getattr(runner, "user_count", None) if runner is not None else None

    def _reread_options(self) -> None:
        """The web UI can change options before a start: take the new plan and fields (the
        backend, its ports and the run directory stay as started)."""
        parsed = self.environment.parsed_options
        if parsed is None:
            return
        opts = self.options
        fixed = {"stack": opts.stack, "stack_port": opts.stack_port,
                 "run_dir": str(self.record.run_dir)}
        if opts.users is None and getattr(parsed, "num_users", None) == 1:
            fixed["num_users"] = None  # Locust's headless default, not the user's choice
        try:
            fresh = harness_options.validate(parsed, check_dir=False, fixed=fixed)
        except harness_options.UsageError as exc:
            log.error("scalecheck: %s (keeping the options the run started with)", exc)
            return
        if fresh.plan.first_level != self.plan.first_level:
            log.warning("scalecheck: the first level changed to %d; the stack started with %d "
                        "and will be rescaled at the first stage", fresh.plan.first_level,
                        self.plan.first_level)
        self.options, self.plan = fresh, fresh.plan
        self.conductor.plan = fresh.plan
        self.collector.set_fields(fresh.hostname_field, fresh.counter_field)
        self.record.set_plan(fresh.plan.to_dict(), fresh.to_dict())

    def test_stop(self) -> None:
        if self.arrivals is not None:
            self.arrivals.stop()
        if self.record is not None:
            self.record.end_stages()
            self.record.save()

    # -- the end (see ``ending``) ---------------------------------------------------------

    def finish(self) -> None:
        """The plan is over: stop deciding, stop the users, conclude the record."""
        if self.finished:
            return
        self.finished = not self.fatal
        ending.settle(self)
        self.conclude()

    def await_records(self) -> None:
        """A local runner has every record once its users stopped (a master waits)."""

    def conclude(self) -> None:
        if self.concluded or self.record is None:
            return
        self.concluded = True
        ending.conclude(self)

    def quit(self) -> None:
        """Locust is quitting (the end, Ctrl-C, SIGTERM, a fatal error): tear down."""
        if self.torn_down or self.record is None:
            return
        self.torn_down = True
        if not self.concluded:
            ending.settle(self)
            self.conclude()
        ending.tear_down(self)
        self._forgive_requests_cut_short()

    def _forgive_requests_cut_short(self) -> None:
        """Locust exits 1 on any failure; requests the stop itself cut short are not the
        app's (their outcome is unknown, and the analysis judges them): when they are the
        only failures, the run's exit code is 0, as for a run that stopped between
        requests."""
        runner = self.environment.runner
        if self.environment.process_exit_code is not None or runner is None or \
                runner.exceptions or locust_log.unhandled_greenlet_exception:
            return
        cut = cut_short_only(runner.errors.values())
        if cut:
            log.info("scalecheck: %d request(s) cut short by the end of the run (recorded, "
                     "outcome unknown); not failures of the app", cut)
            self.environment.process_exit_code = 0

    def say_last_words(self) -> None:
        """Locust printed its summary (or is exiting): the run's outcome, last."""
        ending.say_last_words(self)

    def on_fatal(self, message: str) -> None:
        """The stack cannot go on (the balancer died, a rescale failed, the disk is full):
        end the run."""
        if self.fatal:
            return
        self.fatal = message
        self.fail_run(message)
        gevent.spawn(ending.quit_when_stopped, self)

    def fail_run(self, message: str) -> None:
        """The run failed (its record says why, and the exit code is 2), whether or not it
        is still running."""
        log.error("scalecheck: %s", message)
        self.record.fail(message)
        self.environment.process_exit_code = 2

    def _disk_full(self, reason: str) -> None:
        if self.concluded:
            self.fail_run(reason)
        else:
            self.on_fatal(f"{reason}: the run stopped")

    def read_counter(self):
        try:
            return self.stack.read_counter() if self.stack else None
        except StackError as exc:
            log.warning("scalecheck: %s", exc)
            return None

    def announce(self, index: int, level: int) -> None:
        self.collector.stage = (index, level)

    def _warn(self, text: str) -> None:
        log.warning("scalecheck: %s", text)
        self.record.add_warning(text)


def _drop_if_empty(run_dir) -> None:
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty, or not there: either way nothing of ours to remove


def _cluster_autoscaler(plan) -> dict | None:
    """What the backend needs for --autoscale cluster: the flags of an HPA to write where
    the manifests have none (target 0: the manifests' own)."""
    scaler = plan.autoscale
    if scaler is None or scaler.policy != "cluster":
        return None
    return {"target": scaler.target if scaler.metric == "cpu" else 0.0,
            "min_replicas": scaler.min_replicas, "max_replicas": scaler.max_replicas}
