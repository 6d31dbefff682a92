"""How a run ends, whatever ends it (the plan, Ctrl-C, SIGTERM, a fatal error): stop what
makes requests and wait for the last records (``settle``), write the record's last word
before anything else (``conclude``), then take the stack down and say where the run is
(``tear_down``). Functions of the controller (``roles.controller``), in that order."""

from __future__ import annotations

import logging
import os
import sys
import time

import gevent

from loadtest.harness.names import join_servers
from loadtest.harness.sampler import CpuSampler
from loadtest.harness.totals import totals as make_totals
from loadtest.stack.base import PartsView

log = logging.getLogger("scalecheck")
#: Locust runner states in which its users are already stopping or stopped: stopping
#: them again makes Locust raise "Tried to stop User in an unexpected state".
STOPPING_STATES = ("stopped", "stopping", "cleanup", "quitting")


def settle(role) -> None:
    """Stop everything that makes requests, and wait until every record is in."""
    if role.conductor is not None:
        role.conductor.stop()
    if role.arrivals is not None:
        role.arrivals.stop()
    runner = role.environment.runner
    if runner is not None and runner.state not in STOPPING_STATES:
        runner.stop()
    role.await_records()


def conclude(role) -> None:
    """The record's last word, written before anything else is (Locust's reports)."""
    record = role.record
    try:
        role.collector.stop()
    except Exception as exc:  # e.g. a full disk: the run failed; say so, write run.json
        _records_lost(role, exc)
    if role.disk is not None:
        role.disk.stop()
        record.data["disk"] = role.disk.to_dict()
    if role.sampler is not None:
        role.sampler.stop()
        record.data["cpu"] = role.sampler.result()
    if role.disk is None or role.disk.full is None:  # on a full disk, room is for run.json
        name_servers(role)
    total = role.environment.stats.total
    record.set_events(role.stack.events)
    record.set_load_counts(role.collector.dropped_total)
    record.conclude(
        finished=role.finished, counter_after=role.read_counter(),
        totals=make_totals(role.collector.writer.written, total.num_requests,
                           role.counts.discarded, total.num_failures,
                           reset_stats_partial=role.counts.reset_partial,
                           by_worker=role.collector.received_from))


def _records_lost(role, exc: Exception) -> None:
    """The last records could not be written: the run failed. A full disk says so in its
    own words, once (the guard fails the run, if it had not already)."""
    if role.disk is not None:
        role.disk.check()
        if role.disk.full:
            return
    role.fail_run(f"the last records could not be written: {exc}")


def name_servers(role) -> None:
    """Traefik names the server of each request only in its access log: join it to the
    records now, so that every record says which replica answered."""
    log_path = role.stack.balancer_access_log() if role.stack is not None else None
    if log_path is None or not log_path.exists():
        return

    try:
        result = join_servers(role.record.run_dir, log_path, role.stack.events)
    except (OSError, ValueError) as exc:  # the records stay as they were: say so
        log.error("scalecheck: could not name the servers from %s: %s", log_path, exc)
        return
    role.record.data["naming"] = {"balancer_log": str(log_path), **result.to_dict()}


def tear_down(role) -> None:
    """Take the stack down, keep its logs, close the record and say where it is."""
    record = role.record
    try:
        role.stack.down()
    except Exception as exc:  # teardown must not lose the record
        log.error("scalecheck: stack teardown: %s", exc)
    try:
        role.stack.save_logs(record.run_dir / "logs")
    except OSError as exc:
        log.error("scalecheck: saving the stack's logs: %s", exc)
    role.reports.close()
    html_error = role.reports.write_html()
    if html_error:
        log.error("scalecheck: %s", html_error)
        record.data["warnings"].append({"t": time.time(), "text": html_error})
    record.set_events(role.stack.events)
    record.save()
    record.release_reserve()
    role.pending_words = last_words(record)  # said after Locust's summary: see say_last_words


def say_last_words(role) -> None:
    """The harness's last lines, once, after Locust printed its own summary (its ``quit``
    event, or at exit when Locust never got there): the last line a user reads is the
    run's outcome."""
    words, role.pending_words = role.pending_words, None
    if words:
        print("\n".join(words), file=sys.stderr, flush=True)


def last_words(record) -> list[str]:
    """What the harness says last: how many requests were recorded and where, how to
    analyse them, and for a failed run, last, why it failed and how many requests have
    no record (never "run completed" when it did not)."""
    totals = record.data.get("totals") or {}
    recorded, locust = totals.get("recorded"), totals.get("locust")
    counted = f"{recorded} requests recorded" + \
        (f" (Locust counted {locust})" if locust is not None else "")
    analyse = f"analyse it with: python analyze.py {record.run_dir}"
    if record.status != "failed":
        return [f"scalecheck: run {record.status}: {counted} in {record.run_dir}",
                f"scalecheck: {analyse}"]
    why = record.data.get("error") or "see run.json"
    lost = locust - recorded if isinstance(locust, int) and isinstance(recorded, int) else 0
    return [f"scalecheck: {counted} in {record.run_dir}; {analyse}",
            f"scalecheck: run failed: {why}"
            + (f"; {lost:,} of {locust:,} requests were not recorded" if lost > 0 else "")]


def quit_when_stopped(role, grace: float = 3.0) -> None:
    """After a fatal error the shape ends the test; headless Locust then quits by itself.
    With the web UI it would wait for a user: quit, once the users stopped."""
    runner = role.environment.runner
    deadline = time.monotonic() + 30
    while runner is not None and runner.state != "stopped" and time.monotonic() < deadline:
        gevent.sleep(0.2)
    gevent.sleep(grace)
    if runner is not None and not role.torn_down:
        runner.quit()
        web_ui = getattr(role.environment, "web_ui", None)
        if web_ui is not None:
            web_ui.stop()


def start_sampler(stack, environment):
    """CPU by part, once a second, for the bottleneck analysis: the load generator (this
    process and its children), the balancer, the store, each replica."""
    if not isinstance(stack, PartsView):
        return None

    def parts() -> dict[str, list[int]]:
        try:
            return {"generator": [os.getpid()], **stack.parts()}
        except Exception:  # noqa: BLE001 - a stack changing under the reading: next time
            return {"generator": [os.getpid()]}

    sampler = CpuSampler(parts, cgroups=getattr(stack, "cgroups", None))
    sampler.register(environment)
    sampler.start()
    return sampler
