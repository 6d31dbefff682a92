"""Wires the stack, the run record and the collector into Locust's events.

One ``Harness`` per Locust process. On the master (or a local runner) it owns
the stack and the run directory; on a worker it only records and sends its
records to the master. The shape calls ``begin_stage``/``finish`` on it.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import sys
import time

import gevent
import gevent.lock
import locust
from locust import stats as locust_stats
from locust.runners import MasterRunner, WorkerRunner

from loadtest import options as harness_options
from loadtest.collector import MSG_RECORDS, MSG_STAGE, Collector
from loadtest.records import PartWriter
from loadtest.rundir import RunRecord, new_run_dir
from loadtest.stack import StackError, make_stack

log = logging.getLogger("scalecheck")
_current: Harness | None = None


def current() -> Harness | None:
    return _current


def fail(message: str, code: int = 2) -> None:
    """One line for the user, then exit: bad input never shows a traceback."""
    print(f"scalecheck: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class Harness:
    def __init__(self, environment) -> None:
        self.environment = environment
        self.options = None
        self.stack = None
        self.run = None
        self.collector: Collector | None = None
        self._csv_writer = None
        self._scale_lock = gevent.lock.Semaphore()
        self._finished = False
        self._finalized = False
        self._test_started = False
        self._discarded = 0  # requests Locust forgot when its stats were reset

    # -- Locust events --------------------------------------------------------

    def on_init(self, environment, runner, **_kwargs) -> None:
        parsed = environment.parsed_options
        if parsed is None:  # used as a library without a command line
            return
        try:
            self.options = harness_options.validate(parsed)
        except harness_options.UsageError as exc:
            fail(str(exc))
        opts = self.options
        # Let users finish the request in flight when the test stops: a request
        # cut off mid-way may have incremented the counter and never be counted.
        if not environment.stop_timeout:
            environment.stop_timeout = 10
        if isinstance(runner, WorkerRunner):
            self.collector = Collector(environment, opts.hostname_field, opts.counter_field,
                                       writer=None, worker=runner.client_id)
            runner.register_message(MSG_STAGE, self._on_stage_message)
            return
        try:
            run_dir = new_run_dir(opts.run_dir)
        except (FileExistsError, OSError) as exc:
            fail(str(exc))
        self.run = RunRecord(run_dir, locust_version=locust.__version__,
                             options=opts.to_dict(), command=sys.argv)
        self.collector = Collector(environment, opts.hostname_field, opts.counter_field,
                                   writer=PartWriter(run_dir, "master" if isinstance(
                                       runner, MasterRunner) else "local"),
                                   worker="local")
        if isinstance(runner, MasterRunner):
            runner.register_message(MSG_RECORDS, self.collector.on_records_message)
        environment.events.reset_stats.add_listener(self._on_reset_stats)
        self._keep_locust_reports(parsed, run_dir)
        try:
            self.stack = make_stack(opts.stack, port=opts.stack_port, url=environment.host,
                                    **_backend_options(opts, run_dir))
            atexit.register(self.stack.down)
            first = opts.levels[0] if self.stack.controlled else 0
            if self.stack.controlled:
                log.info("scalecheck: bringing up the %s stack with %d replica(s)",
                         opts.stack, first)
            else:
                log.info("scalecheck: recording against %s, which it does not control",
                         self.stack.url)
            self.stack.up(first)
        except (StackError, KeyboardInterrupt) as exc:
            if self.stack is not None:
                self.stack.down()
            message = str(exc) if isinstance(exc, StackError) else "interrupted while the " \
                "stack was starting; everything it started is stopped"
            self.run.data.update(status="failed", error=message, ended=time.time())
            self.run.save()
            fail(message, 2 if isinstance(exc, StackError) else 130)
        if not environment.host:
            environment.host = self.stack.url
        self.run.data.update(stack=self.stack.describe(), url=environment.host,
                             run_dir=str(run_dir), status="ready")
        self.run.save()
        log.info("scalecheck: recording into %s", run_dir)

    def on_test_start(self, environment, **_kwargs) -> None:
        if self.run is not None and self._test_started:
            # One run directory per Locust process: a second start would mix two
            # tests' stages and records. Say so, and do not start.
            log.error("scalecheck: this Locust process already recorded a run in %s; "
                      "restart locust to record another", self.run.run_dir)
            gevent.spawn(environment.runner.stop)
            return
        self._reread_options(environment)
        if self.collector:
            self.collector.start()
        if self.run is None:
            return
        self._test_started = True
        self.run.data["status"] = "running"
        self.run.data["test_started"] = time.time()
        self.run.data["counter"]["before"] = self._read_counter()
        self.run.save()

    def _reread_options(self, environment) -> None:
        """The web UI can change our options before a start: take the new levels,
        stage time and fields (the backend and its port stay as started)."""
        parsed = environment.parsed_options
        if parsed is None or self.options is None:
            return
        try:
            fresh = harness_options.validate(parsed)
        except harness_options.UsageError as exc:
            log.error("scalecheck: %s (keeping %s)", exc, self.options.to_dict())
            return
        self.options = dataclasses.replace(
            fresh, stack=self.options.stack, stack_port=self.options.stack_port,
            run_dir=self.options.run_dir, compose_file=self.options.compose_file,
            compose_service=self.options.compose_service)
        if self.collector:
            self.collector.hostname_spec = fresh.hostname_field
            self.collector.counter_spec = fresh.counter_field
        if self.run is not None:
            self.run.data["options"] = self.options.to_dict()

    def on_test_stop(self, environment, **_kwargs) -> None:
        if self.collector:
            self.collector.flush()  # on a worker this sends before "client_stopped"
        if self.run is not None:
            self.run.end_stages()
            self.run.save()

    def on_quitting(self, environment, **_kwargs) -> None:
        self.finalize()

    # -- called by the shape ---------------------------------------------------

    def begin_stage(self, index: int, level: int, users: int) -> None:
        controlled = self.stack is not None and self.stack.controlled
        stage = self.run.begin_stage(index, level if controlled else 0, users)
        self._announce_stage(index, stage["level"])
        if controlled:
            gevent.spawn(self._rescale, stage, level)
        else:
            stage["t_ready"] = stage["t_start"]

    def finish(self) -> None:
        """After the last stage: stop the users first, so every record reaches us."""
        if self._finished:
            return
        self._finished = True
        with self._scale_lock:  # let a rescale in progress end cleanly
            pass
        runner = self.environment.runner
        if runner is not None and runner.state not in ("stopped", "stopping"):
            runner.stop()
        if isinstance(runner, MasterRunner):
            self._await_worker_records(runner)

    # -- internals ---------------------------------------------------------------

    def _on_reset_stats(self, **_kwargs) -> None:
        """The web UI's "reset stats": keep Locust's count whole for the comparison."""
        self._discarded += self.environment.stats.total.num_requests

    def _locust_count(self) -> int:
        """Requests Locust counted in this run, resets of its statistics added back."""
        return self.environment.stats.total.num_requests + self._discarded

    def _rescale(self, stage: dict, level: int) -> None:
        with self._scale_lock:
            try:
                result = self.stack.scale(level)
                stage["t_ready"] = result.ready
                stage["scale_asked"] = result.asked
            except StackError as exc:
                log.error("scalecheck: rescale to %d failed: %s", level, exc)
                stage["error"] = str(exc)
                self.run.data["status"] = "failed"
                self.environment.process_exit_code = 2
                gevent.spawn(self.environment.runner.quit)
            finally:
                self.run.data["stack_events"] = self.stack.events
                self.run.save()

    def _announce_stage(self, index: int, level: int) -> None:
        self.collector.stage = (index, level)
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            runner.send_message(MSG_STAGE, {"index": index, "level": level})

    def _on_stage_message(self, environment=None, msg=None, **_kwargs) -> None:
        self.collector.stage = (msg.data["index"], msg.data["level"])

    def _read_counter(self):
        try:
            return self.stack.read_counter() if self.stack else None
        except StackError as exc:
            log.warning("scalecheck: %s", exc)
            return None

    def _keep_locust_reports(self, parsed, run_dir) -> None:
        """Locust's own CSV stats and HTML report go into the run directory too."""
        if getattr(parsed, "html_file", None) is None:
            parsed.html_file = str(run_dir / "locust-report.html")
        if getattr(parsed, "csv_prefix", None) is None:
            self._csv_writer = locust_stats.StatsCSVFileWriter(
                self.environment, locust_stats.PERCENTILES_TO_REPORT,
                str(run_dir / "locust"), full_history=False)
            gevent.spawn(self._csv_writer.stats_writer)

    def finalize(self) -> None:
        if self._finalized:
            return
        self._finalized = True
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner):
            if self.collector:
                self.collector.stop()
            return
        if self.run is None:
            return
        try:
            if runner is not None and runner.state not in ("stopped",):
                runner.stop()  # Ctrl-C/SIGTERM: stop users so every record arrives
            if isinstance(runner, MasterRunner) and runner.state != "quitting":
                self._await_worker_records(runner)
            if self.collector:
                self.collector.stop()
            self.run.end_stages()
            self.run.data["counter"]["after"] = self._read_counter()
            total = self.environment.stats.total
            self.run.data["totals"] = {
                "recorded": self.collector.writer.written if self.collector else 0,
                "locust": self._locust_count(),
                "locust_failures": total.num_failures,
            }
            if getattr(self.environment.parsed_options, "reset_stats", False):
                # Locust dropped its count once spawning completed: nothing to compare.
                self.run.data["totals"]["locust"] = None
                self.run.data["totals"]["note"] = "--reset-stats: Locust's count is partial"
            if self.collector and self.collector.received_from:
                self.run.data["totals"]["by_worker"] = dict(self.collector.received_from)
            if self.run.data["status"] in ("running", "ready"):
                self.run.data["status"] = "completed" if self._finished else "interrupted"
        finally:
            self.run.data["ended"] = time.time()
            if self.stack is not None:
                self.run.data["stack_events"] = self.stack.events
                try:
                    self.stack.down()
                except Exception as exc:  # teardown must not lose the record
                    log.error("scalecheck: stack teardown: %s", exc)
                self.stack.save_logs(self.run.run_dir / "logs")
            if self._csv_writer is not None:
                self._csv_writer.close_files()
            self.run.save()
        totals = self.run.data["totals"]
        print(f"scalecheck: run {self.run.data['status']}: {totals['recorded']} requests "
              f"recorded (Locust counted {totals['locust']}) in {self.run.run_dir}\n"
              f"scalecheck: analyse it with: python analyze.py {self.run.run_dir}",
              file=sys.stderr, flush=True)

    def _await_worker_records(self, runner, quiet: float = 0.5, limit: float = 8.0) -> None:
        """Wait, bounded, for the workers' last records and their last stats report.

        Records arrive before each worker's 'client_stopped'; Locust's own
        counts arrive with the workers' periodic stats report (every 3 s).
        Both must be in before totals are taken and the master quits.
        """
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            received = sum(self.collector.received_from.values())
            if received == last and self._locust_count() >= received:
                return
            last = received
            gevent.sleep(quiet)


def _backend_options(opts, run_dir) -> dict:
    if opts.stack == "local":
        return {"workdir": run_dir / "stack", "log_dir": run_dir / "logs"}
    if opts.stack == "compose":
        return {"log_dir": run_dir / "logs", "compose_file": opts.compose_file or None,
                "service": opts.compose_service}
    return {}


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
