"""Wires the harness into Locust's events, by role.

One ``Harness`` per Locust process. Its role decides what it does:

- ``ControllerRole`` (a local runner, or ``MasterRole`` for ``--master`` and
  ``--processes``) owns the run: the plan, the run directory and its record,
  the stack (through the ``Conductor``), the records' files and Locust's own
  reports.
- ``WorkerRole`` only records requests and sends them to the master; in the
  open model it also dispatches its share of the arrivals.

The shape asks ``Harness.tick()`` for the load now; everything else happens
in Locust's events: ``init`` (validate, create, bring the stack up),
``test_start``, ``test_stop`` and ``quitting`` (conclude the record, take the
stack down).
"""

from __future__ import annotations

import atexit
import logging
import signal
import sys
import time

import gevent
import greenlet
import locust
from locust.runners import MasterRunner, WorkerRunner

from loadtest import options as harness_options
from loadtest.arrivals import ArrivalDispatcher, ArrivalSchedule
from loadtest.collector import MSG_RECORDS, Collector
from loadtest.conductor import Conductor
from loadtest.locust_reports import LocustReports
from loadtest.plan import LoadProfile, RunPlan, Target, build_plan
from loadtest.records import PartWriter
from loadtest.rundir import RunRecord, choose_run_dir, create_run_dir
from loadtest.stack import StackError, StackSettings, make_stack
from loadtest.totals import totals as make_totals

log = logging.getLogger("scalecheck")
MSG_STAGE = "scalecheck_stage"
#: Locust runner states in which its users are already stopping or stopped: stopping
#: them again makes Locust raise "Tried to stop User in an unexpected state".
STOPPING_STATES = ("stopped", "stopping", "cleanup", "quitting")
MSG_ARRIVALS = "scalecheck_arrivals"
_current: Harness | None = None


def current() -> Harness | None:
    return _current


def arrivals() -> ArrivalDispatcher | None:
    """The open model's dispatcher in this process, if the run uses one."""
    return _current.role.arrivals if _current is not None and _current.role else None


def fail(message: str, code: int = 2) -> None:
    """One line for the user, then exit: bad input never shows a traceback."""
    print(f"scalecheck: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class Harness:
    def __init__(self, environment) -> None:
        self.environment = environment
        self.options: harness_options.HarnessOptions | None = None
        self.role: WorkerRole | ControllerRole | None = None

    # -- Locust events --------------------------------------------------------

    def on_init(self, environment, runner, **_kwargs) -> None:
        parsed = environment.parsed_options
        if parsed is None:  # used as a library without a command line
            return
        try:
            self.options = harness_options.validate(
                parsed, check_dir=not isinstance(runner, WorkerRunner))
        except harness_options.UsageError as exc:
            fail(str(exc))
        # Let users finish the request in flight when the test stops: a request
        # cut off mid-way may have incremented the counter and never be counted.
        if not environment.stop_timeout:
            environment.stop_timeout = 10
        if isinstance(runner, WorkerRunner):
            self.role = WorkerRole(self, runner)
        elif isinstance(runner, MasterRunner):
            self.role = MasterRole(self, runner)
        else:
            self.role = ControllerRole(self, runner)
        self.role.setup()

    def on_test_start(self, environment, **_kwargs) -> None:
        if self.role is not None:
            self.role.test_start()

    def on_test_stop(self, environment, **_kwargs) -> None:
        if self.role is not None:
            self.role.test_stop()

    def on_quitting(self, environment, **_kwargs) -> None:
        if self.role is not None:
            self.role.quit()

    def tick(self) -> tuple[int, float] | None:
        """For the shape: the users and spawn rate now, or None once the plan is over."""
        if not isinstance(self.role, ControllerRole):
            return None
        return self.role.tick()


class WorkerRole:
    """Records requests and sends them to the master; dispatches its share of arrivals."""

    def __init__(self, harness: Harness, runner) -> None:
        self.harness = harness
        self.runner = runner
        self.environment = harness.environment
        self.arrivals: ArrivalDispatcher | None = None
        self.collector: Collector | None = None

    def setup(self) -> None:
        opts = self.harness.options
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
                self.arrivals = _pending_dispatcher(self.collector)  # users wait for the rate
        except harness_options.UsageError as exc:
            log.error("scalecheck: worker: %s", exc)
        self.collector.start()

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
            self.arrivals = _pending_dispatcher(self.collector)
        self.arrivals.stop()
        # The same dispatcher (users may already wait on it), now with its schedule.
        self.arrivals.schedule = ArrivalSchedule(profile, data["share"])
        self.arrivals.t0 = data["t0"]
        self.arrivals.start()


def _pending_dispatcher(collector: Collector) -> ArrivalDispatcher:
    """A dispatcher users can wait on before the master has sent the rate."""
    return ArrivalDispatcher(ArrivalSchedule(LoadProfile("open", ((0.0, 0.0), (1.0, 0.0)))),
                             time.time(), collector.count_dropped)


class ControllerRole:
    """Owns the run: plan, record, stack, records' files, Locust's reports."""

    def __init__(self, harness: Harness, runner) -> None:
        self.harness = harness
        self.runner = runner
        self.environment = harness.environment
        self.plan: RunPlan | None = None
        self.record: RunRecord | None = None
        self.stack = None
        self.conductor: Conductor | None = None
        self.collector: Collector | None = None
        self.reports: LocustReports | None = None
        self.arrivals: ArrivalDispatcher | None = None
        self.t0: float | None = None
        self.finished = False      # the plan ran to its end
        self._concluded = False
        self._torn_down = False
        self._started = False
        self._discarded = 0        # requests Locust forgot when its stats were reset
        self._fatal: str | None = None
        self._last_tick: tuple[int, float] | None = None

    # -- start ------------------------------------------------------------------------

    def setup(self) -> None:
        opts = self.harness.options
        parsed = self.environment.parsed_options
        self._catch_signals()
        self.plan = build_plan(opts)
        run_dir = choose_run_dir(opts.run_dir)
        settings = StackSettings(port=opts.stack_port, url=opts.host, balancer=opts.balancer,
                                 api_port=opts.api_port, run_dir=run_dir,
                                 log_dir=run_dir / "logs", workdir=run_dir / "stack",
                                 app_port=opts.app_port, health_path=opts.health_path,
                                 counter_read=opts.counter_read,
                                 ready_timeout=opts.ready_timeout,
                                 options={**opts.backend_options,
                                          "store_proxy": any(f.kind in ("latency", "reset")
                                                             for f in self.plan.faults)})
        try:
            self.stack = make_stack(opts.stack, settings)
            self.stack.preflight()  # binaries, ports, the engine: before anything is created
        except StackError as exc:
            if self.stack is not None:
                self.stack.down()
            fail(str(exc))
        try:
            create_run_dir(run_dir)
        except OSError as exc:
            self.stack.down()
            fail(f"cannot create the run directory: {exc}")
        self.record = RunRecord(run_dir, locust_version=locust.__version__, command=sys.argv)
        self.record.set_plan(self.plan.to_dict(), opts.to_dict())
        self.record.save()
        self.collector = Collector(self.environment, opts.hostname_field, opts.counter_field,
                                   writer=PartWriter(run_dir, self._writer_prefix()),
                                   worker="local", on_warning=self._warn)
        self._register_messages()
        self.environment.events.reset_stats.add_listener(self._on_reset_stats)
        self.environment.events.spawning_complete.add_listener(self._on_spawning_complete)
        self.reports = LocustReports(self.environment, parsed, run_dir)
        atexit.register(self.quit)
        self._bring_up()
        self.conductor = Conductor(self.stack, self.plan, self.record, self._announce,
                                   self._on_fatal, replace_dead=opts.replace_dead,
                                   users_now=self._users_now)
        self._attach_autoscaler_and_faults()
        log.info("scalecheck: recording into %s", run_dir)

    def _writer_prefix(self) -> str:
        return "local"

    def _register_messages(self) -> None:
        pass

    def _catch_signals(self) -> None:
        """Until the stack is up, Ctrl-C and SIGTERM only set a flag: bringing the stack up
        runs in a greenlet that is stopped cleanly when the flag is seen (an exception
        raised from a signal handler could land in any greenlet, at any time)."""
        self._signalled: str | None = None
        self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum, _frame):
            self._signalled = self._signalled or signal.Signals(signum).name

        for sig in self._previous:
            signal.signal(sig, on_signal)

    def _release_signals(self) -> None:
        """From here both signals do what Ctrl-C does in Locust: a KeyboardInterrupt in
        the main greenlet, where Locust waits for the test; it then writes its report and
        quits, and the record is concluded then. (Locust's own SIGTERM handler never
        fires here: the signal ended Locust at once, leaving run.json 'running'.)"""
        main = greenlet.getcurrent()

        def interrupt(signum, _frame):
            # An interrupted run never exits 0 (CI would read it as success): 130 / 143,
            # unless a failure already chose its code.
            if self.environment.process_exit_code is None:
                self.environment.process_exit_code = 130 if signum == signal.SIGINT else 143
            gevent.get_hub().loop.run_callback(main.throw, KeyboardInterrupt)

        for sig in self._previous:
            signal.signal(sig, interrupt)

    def _bring_up(self) -> None:
        opts = self.harness.options
        if self.stack.controlled:
            log.info("scalecheck: bringing up the %s stack (%s) with %d replica(s)",
                     opts.stack, opts.balancer, self.plan.first_level)
        else:
            log.info("scalecheck: recording against %s, which it does not control",
                     self.stack.url)
        def up() -> StackError | None:
            try:
                self.stack.up(self.plan.first_level)
                return None
            except StackError as exc:  # returned, not raised: one line for the user
                return exc

        job = gevent.spawn(up)
        while not job.ready() and not self._signalled:
            job.join(timeout=0.05)
        error = None
        if self._signalled and not job.ready():
            job.kill(block=True)
        elif job.successful():
            error = job.value
        else:
            raise job.exception
        if self._signalled or error is not None:
            self.stack.down()
            if error is not None:
                message, code, status = str(error), 2, "failed"
            else:
                which = "Ctrl-C" if self._signalled == "SIGINT" else self._signalled
                message = f"{which} while the stack was starting; everything it started " \
                          "is stopped"
                code, status = (130 if self._signalled == "SIGINT" else 143), "interrupted"
            self.record.data.update(status=status, error=message, ended=time.time())
            self.record.set_events(self.stack.events)
            self.record.save()
            self.record.release_reserve()
            self._torn_down = self._concluded = True
            fail(message, code)
        self._release_signals()
        if not self.environment.host:
            self.environment.host = self.stack.url
        self.record.describe_stack(self.stack.describe(), self.environment.host)
        self.record.set_events(self.stack.events)
        self.record.mark_ready()

    def _attach_autoscaler_and_faults(self) -> None:
        if self.plan.autoscale is not None:
            from loadtest.autoscale.controller import Autoscaler

            self.conductor.autoscaler = Autoscaler(self.plan.autoscale, self.stack,
                                                   self.collector, self.stack.events)
        if self.plan.faults:
            from loadtest.faults import FaultInjector

            self.conductor.faults = FaultInjector(self.plan.faults, self.stack,
                                                  self.stack.events, self.plan.first_level)

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
        self._reread_options()
        self._clock()
        self.collector.start()
        self.reports.start()
        self.record.mark_running(self._read_counter())
        self.conductor.start(self.t0)
        if self.plan.open_model:
            self._start_arrivals()

    def _clock(self) -> float:
        if self.t0 is None:
            self.t0 = time.time()
        return self.t0

    def _start_arrivals(self) -> None:
        schedule = ArrivalSchedule(self.plan.load, 1.0)
        self.arrivals = ArrivalDispatcher(schedule, self.t0, self.collector.count_dropped)
        self.arrivals.start()

    def tick(self) -> tuple[int, float] | None:
        self._clock()
        t = self.conductor.plan_time() if self.conductor is not None and \
            self.conductor.t0 is not None else time.time() - self.t0
        if self._fatal:
            # Locust stops the users (and, headless, quits) when the shape says it is over:
            # the one way to end a test that does not race with Locust's own stopping.
            return None
        if self._concluded:
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
        """The web UI can change options before a start: take the new plan and fields
        (the backend, its ports and the run directory stay as started)."""
        parsed = self.environment.parsed_options
        if parsed is None:
            return
        for name, value in (("stack", self.harness.options.stack),
                            ("stack_port", self.harness.options.stack_port),
                            ("run_dir", str(self.record.run_dir))):
            setattr(parsed, name, value)
        if self.harness.options.users is None and getattr(parsed, "num_users", None) == 1:
            parsed.num_users = None  # Locust's headless default, not the user's choice
        try:
            fresh = harness_options.validate(parsed, check_dir=False)
            plan = build_plan(fresh)
        except harness_options.UsageError as exc:
            log.error("scalecheck: %s (keeping the options the run started with)", exc)
            return
        if plan.first_level != self.plan.first_level:
            log.warning("scalecheck: the first level changed to %d; the stack started with %d "
                        "and will be rescaled at the first stage", plan.first_level,
                        self.plan.first_level)
        self.harness.options, self.plan = fresh, plan
        self.conductor.plan = plan
        self.collector.set_fields(fresh.hostname_field, fresh.counter_field)
        self.record.set_plan(plan.to_dict(), fresh.to_dict())

    def test_stop(self) -> None:
        if self.arrivals is not None:
            self.arrivals.stop()
        if self.record is not None:
            self.record.end_stages()
            self.record.save()

    # -- the end ------------------------------------------------------------------------

    def finish(self) -> None:
        """The plan is over: stop deciding, stop the users, conclude the record."""
        if self.finished:
            return
        self.finished = not self._fatal
        self._settle()
        self.conclude()

    def _settle(self) -> None:
        """Stop everything that makes requests, and wait until every record is in."""
        if self.conductor is not None:
            self.conductor.stop()
        if self.arrivals is not None:
            self.arrivals.stop()
        runner = self.environment.runner
        if runner is not None and runner.state not in STOPPING_STATES:
            runner.stop()
        self._await_records()

    def _await_records(self) -> None:
        """A local runner has every record once its users stopped."""

    def conclude(self) -> None:
        """The record's last word, written before anything else is (Locust's reports)."""
        if self._concluded or self.record is None:
            return
        self._concluded = True
        try:
            self.collector.stop()
        except Exception as exc:  # e.g. a full disk: say so, and still write run.json
            log.error("scalecheck: the last records could not be written: %s", exc)
            self.record.data["error"] = f"records not written: {exc}"
        self._name_servers()
        total = self.environment.stats.total
        self.record.set_events(self.stack.events)
        self.record.set_load_counts(self.collector.dropped_total)
        self.record.conclude(
            finished=self.finished, counter_after=self._read_counter(),
            totals=make_totals(self.collector.writer.written, total.num_requests,
                               self._discarded, total.num_failures,
                               reset_stats_partial=self._reset_partial(),
                               by_worker=self.collector.received_from))

    def _name_servers(self) -> None:
        """Traefik names the server of each request only in its access log: join it to the
        records now, so that every record says which replica answered."""
        log_path = self.stack.balancer_access_log() if self.stack is not None else None
        if log_path is None or not log_path.exists():
            return
        from loadtest.names import join_servers

        try:
            result = join_servers(self.record.run_dir, log_path, self.stack.events)
        except (OSError, ValueError) as exc:  # the records stay as they were: say so
            log.error("scalecheck: could not name the servers from %s: %s", log_path, exc)
            return
        self.record.data["naming"] = {"balancer_log": str(log_path), **result.to_dict()}

    def quit(self) -> None:
        """Locust is quitting (the end, Ctrl-C, SIGTERM, a fatal error): tear down."""
        if self._torn_down or self.record is None:
            return
        self._torn_down = True
        if not self._concluded:
            self._settle()
            self.conclude()
        try:
            self.stack.down()
        except Exception as exc:  # teardown must not lose the record
            log.error("scalecheck: stack teardown: %s", exc)
        try:
            self.stack.save_logs(self.record.run_dir / "logs")
        except OSError as exc:
            log.error("scalecheck: saving the stack's logs: %s", exc)
        self.record.set_events(self.stack.events)
        self.record.save()
        self.record.release_reserve()
        self.reports.close()
        totals = self.record.data["totals"]
        error = self.record.data.get("error")
        print(f"scalecheck: run {self.record.status}: {totals['recorded']} requests recorded "
              f"(Locust counted {totals['locust']}) in {self.record.run_dir}"
              + (f"\nscalecheck: {error}" if error and self.record.status == "failed" else "")
              + f"\nscalecheck: analyse it with: python analyze.py {self.record.run_dir}",
              file=sys.stderr, flush=True)

    def _on_fatal(self, message: str) -> None:
        """The stack cannot go on (the balancer died, a rescale failed): end the run."""
        if self._fatal:
            return
        self._fatal = message
        log.error("scalecheck: %s", message)
        self.record.fail(message)
        self.environment.process_exit_code = 2
        gevent.spawn(self._quit_when_stopped)

    def _quit_when_stopped(self, grace: float = 3.0) -> None:
        """The shape has ended the test (see ``tick``); headless Locust then quits by
        itself. With the web UI it would wait for a user: quit, once the users stopped."""
        runner = self.environment.runner
        deadline = time.monotonic() + 30
        while runner is not None and runner.state != "stopped" and time.monotonic() < deadline:
            gevent.sleep(0.2)
        gevent.sleep(grace)
        if runner is not None and not self._torn_down:
            runner.quit()
            web_ui = getattr(self.environment, "web_ui", None)
            if web_ui is not None:
                web_ui.stop()

    # -- Locust's counts -----------------------------------------------------------

    def _on_reset_stats(self, **_kwargs) -> None:
        """The web UI's "reset stats": keep Locust's count whole for the comparison."""
        self._discarded += self.environment.stats.total.num_requests

    def _on_spawning_complete(self, **_kwargs) -> None:
        """--reset-stats: Locust has just reset its statistics (its own listener runs
        first); add back what it forgot, which is what we saw until now."""
        if getattr(self.environment.parsed_options, "reset_stats", False) and \
                not isinstance(self.runner, MasterRunner):
            self._discarded += max(0, self.collector.seen - self.environment.stats.total
                                   .num_requests)

    def _reset_partial(self) -> bool:
        return False

    def _read_counter(self):
        try:
            return self.stack.read_counter() if self.stack else None
        except StackError as exc:
            log.warning("scalecheck: %s", exc)
            return None

    def _announce(self, index: int, level: int) -> None:
        self.collector.stage = (index, level)

    def _warn(self, text: str) -> None:
        log.warning("scalecheck: %s", text)
        self.record.add_warning(text)


class MasterRole(ControllerRole):
    """The controller of a distributed run: workers send records; it tells them the stage
    and, in the open model, their share of the arrivals."""

    def _writer_prefix(self) -> str:
        return "master"

    def test_start(self) -> None:
        self._workers = set(self.runner.clients.keys())
        super().test_start()

    def _settle(self) -> None:
        """After the workers' last records are in, tell each to quit. Locust's master
        forgets a worker once it reports it stopped (until it says it is ready again,
        stop_timeout later), and would quit without telling it: the worker would then
        wait 60 s for a heartbeat before it exits."""
        super()._settle()
        for client_id in sorted(getattr(self, "_workers", set()) |
                                set(self.collector.received_from)):
            self.runner.send_message("quit", None, client_id=client_id)

    def _register_messages(self) -> None:
        self.runner.register_message(MSG_RECORDS, self.collector.on_records_message)

    def _announce(self, index: int, level: int) -> None:
        super()._announce(index, level)
        self.runner.send_message(MSG_STAGE, {"index": index, "level": level})

    def _start_arrivals(self) -> None:
        workers = max(1, self.runner.worker_count)
        for client_id in list(self.runner.clients.keys()):
            self.runner.send_message(MSG_ARRIVALS, {
                "points": [list(p) for p in self.plan.load.points], "share": 1.0 / workers,
                "t0": self.t0}, client_id=client_id)

    def _reset_partial(self) -> bool:
        return bool(getattr(self.environment.parsed_options, "reset_stats", False))

    def _await_records(self, quiet: float = 0.5, limit: float = 8.0) -> None:
        """Wait, bounded, for the workers' last records and their last stats report.

        Records arrive before each worker's 'client_stopped'; Locust's own
        counts arrive with the workers' periodic stats report (every 3 s).
        Both must be in before totals are taken and the master quits.
        """
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            received = sum(self.collector.received_from.values())
            locust_count = self.environment.stats.total.num_requests + self._discarded
            if received == last and (self._reset_partial() or locust_count >= received):
                return
            last = received
            gevent.sleep(quiet)


def install(environment_events) -> None:
    """Hook the harness into Locust; call once from the locustfile."""

    @environment_events.init_command_line_parser.add_listener
    def _(parser, **_kwargs):
        harness_options.add_arguments(parser)

    @environment_events.init.add_listener
    def _(environment, runner, **kwargs):
        global _current
        _current = Harness(environment)
        environment.events.test_start.add_listener(_current.on_test_start)
        environment.events.test_stop.add_listener(_current.on_test_stop)
        environment.events.quitting.add_listener(_current.on_quitting)
        _current.on_init(environment, runner, **kwargs)
