"""Wires the harness into Locust's events, by role; the locustfile calls ``install``.

One ``Harness`` per Locust process, kept on Locust's ``environment`` (as
``environment.scalecheck``). Its role decides what it does (``loadtest.harness.roles``):

- ``ControllerRole`` (a local runner, or ``MasterRole`` for ``--master`` and
  ``--processes``) owns the run: the plan, the run directory and its record, the
  stack (through the ``Conductor``), the records' files and Locust's own reports.
- ``WorkerRole`` only records requests and sends them to the master; in the open
  model it also dispatches its share of the arrivals.

The shape asks ``Harness.tick()`` for the load now; everything else happens in
Locust's events: ``init`` (validate, create, bring the stack up), ``test_start``,
``test_stop``, ``quitting`` (conclude the record, take the stack down) and ``quit`` (after
Locust's summary: the run's outcome, the last lines).
"""

from __future__ import annotations

import logging
from typing import Any

from locust.runners import MasterRunner, WorkerRunner

from loadtest.contract import events as ev
from loadtest.harness import options as harness_options
from loadtest.harness.arrivals import ArrivalDispatcher
from loadtest.harness.roles import ControllerRole, MasterRole, WorkerRole
from loadtest.harness.roles.exits import fail

ATTRIBUTE = "scalecheck"
LOOPBACK = "127.0.0.1"
#: The last environment a harness was installed in, for users who call ``arrivals()``
#: without one (locustfiles written before it took the environment).
_last_environment: Any = None


def current(environment=None) -> Harness | None:
    """The harness of ``environment`` (default: the one this process installed)."""
    environment = environment if environment is not None else _last_environment
    return getattr(environment, ATTRIBUTE, None) if environment is not None else None


def arrivals(environment=None) -> ArrivalDispatcher | None:
    """The open model's dispatcher in this process, if the run uses one. Users pass their
    ``self.environment``."""
    harness = current(environment)
    return harness.role.arrivals if harness is not None and harness.role else None


class Harness:
    def __init__(self, environment) -> None:
        self.environment = environment
        self.options: harness_options.HarnessOptions | None = None
        self.role: WorkerRole | ControllerRole | None = None

    def on_init(self, environment, runner, **_kwargs) -> None:
        parsed = environment.parsed_options
        if parsed is None:  # used as a library without a command line
            return
        try:
            self.options = harness_options.validate(
                parsed, check_dir=not isinstance(runner, WorkerRunner))
        except harness_options.UsageError as exc:
            fail(str(exc))
        # Let users finish the request in flight when the test stops (a request cut off
        # mid-way may have changed the app's state), for a moment: one still waiting
        # after that is recorded as stopped in flight (an unknown outcome), and the run
        # ends on time however long the app hangs.
        if not environment.stop_timeout:
            environment.stop_timeout = min(self.options.request_timeout,
                                           ev.STOP_GRACE_S) + 0.5
        warn_if_open(parsed, runner)
        role = WorkerRole if isinstance(runner, WorkerRunner) else \
            MasterRole if isinstance(runner, MasterRunner) else ControllerRole
        self.role = role(environment, runner, self.options)
        self.role.setup()

    def on_test_start(self, **_kwargs) -> None:
        if self.role is not None:
            self.role.test_start()

    def on_test_stop(self, **_kwargs) -> None:
        if self.role is not None:
            self.role.test_stop()

    def on_quitting(self, **_kwargs) -> None:
        if self.role is not None:
            self.role.quit()

    def on_quit(self, **_kwargs) -> None:
        """Locust printed its summary and is about to exit."""
        say = getattr(self.role, "say_last_words", None)
        if say is not None:
            say()

    def tick(self) -> tuple[int, float] | None:
        """For the shape: the users and spawn rate now, or None once the plan is over."""
        if not isinstance(self.role, ControllerRole):
            return None
        return self.role.tick()


def warn_if_open(parsed, runner) -> None:
    """One line when the user chose to listen beyond this machine: who can reach the port
    can drive the run."""
    log = logging.getLogger("scalecheck")
    web = getattr(parsed, "web_host", LOOPBACK)
    if not getattr(parsed, "headless", False) and not _loopback(web):
        log.warning("scalecheck: the web UI listens on %s with no login: whoever reaches it "
                    "can start, stop and reshape this run", web or "every interface")
    bind = getattr(parsed, "master_bind_host", LOOPBACK)
    if isinstance(runner, MasterRunner) and not _loopback(bind):
        log.warning("scalecheck: the master listens on %s: any host that reaches it can "
                    "join as a worker", bind)


def _loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")


def install(environment_events, defaults: dict[str, Any] | None = None) -> None:
    """Hook the harness into Locust; call once from the locustfile. ``defaults``: the
    locustfile's own defaults for the harness's options (by their dest names, e.g.
    ``{"counter_field": "none"}``)."""

    @environment_events.init_command_line_parser.add_listener
    def _(parser, **_kwargs):
        harness_options.add_arguments(parser, defaults)
        # Locust listens on every interface by default, with no login: its web UI and its
        # master port could start, stop and retarget this run from anywhere. Loopback
        # unless the user widens it (and is told so).
        parser.set_defaults(web_host=LOOPBACK, master_bind_host=LOOPBACK)

    @environment_events.init.add_listener
    def _(environment, runner, **kwargs):
        global _last_environment
        harness = Harness(environment)
        setattr(environment, ATTRIBUTE, harness)
        _last_environment = environment
        environment.events.test_start.add_listener(harness.on_test_start)
        environment.events.test_stop.add_listener(harness.on_test_stop)
        environment.events.quitting.add_listener(harness.on_quitting)
        environment.events.quit.add_listener(harness.on_quit)
        harness.on_init(environment, runner, **kwargs)


__all__ = ["Harness", "arrivals", "current", "fail", "install"]
