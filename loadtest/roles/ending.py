"""How a run ends, whatever ends it (the plan, Ctrl-C, SIGTERM, a fatal error): stop what
makes requests and wait for the last records (``settle``), write the record's last word
before anything else (``conclude``), then take the stack down and say where the run is
(``tear_down``). Functions of the controller (``roles.controller``), in that order."""

from __future__ import annotations

import logging
import sys
import time

import gevent

from loadtest.totals import totals as make_totals

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
    except Exception as exc:  # e.g. a full disk: say so, and still write run.json
        log.error("scalecheck: the last records could not be written: %s", exc)
        record.data["error"] = f"records not written: {exc}"
    if role.sampler is not None:
        role.sampler.stop()
        record.data["cpu"] = role.sampler.result()
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


def name_servers(role) -> None:
    """Traefik names the server of each request only in its access log: join it to the
    records now, so that every record says which replica answered."""
    log_path = role.stack.balancer_access_log() if role.stack is not None else None
    if log_path is None or not log_path.exists():
        return
    from loadtest.names import join_servers

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
    record.set_events(role.stack.events)
    record.save()
    record.release_reserve()
    role.reports.close()
    totals = record.data["totals"]
    error = record.data.get("error")
    print(f"scalecheck: run {record.status}: {totals['recorded']} requests recorded "
          f"(Locust counted {totals['locust']}) in {record.run_dir}"
          + (f"\nscalecheck: {error}" if error and record.status == "failed" else "")
          + f"\nscalecheck: analyse it with: python analyze.py {record.run_dir}",
          file=sys.stderr, flush=True)


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
    from loadtest.sampler import CpuSampler
    from loadtest.stack.base import Unsupported

    try:
        stack.parts()
    except Unsupported:
        return None

    def parts() -> dict[str, list[int]]:
        import os

        try:
            return {"generator": [os.getpid()], **stack.parts()}
        except Exception:  # noqa: BLE001 - a stack changing under the reading: next time
            return {"generator": [os.getpid()]}

    sampler = CpuSampler(parts, cgroups=getattr(stack, "cgroups", None))
    sampler.register(environment)
    sampler.start()
    return sampler
