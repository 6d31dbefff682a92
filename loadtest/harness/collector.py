"""Record every request: which replica served it and the counter value it saw.

Shaped like Locust's ``csv_request_logger``: the ``request`` listener only
reads the response and appends one ``Record``; a greenlet flushes at least
every second. On a worker the flush sends the batch to the master through
Locust's own messaging, so no shared filesystem is needed; the master (or a
local runner) writes Parquet parts into the run directory.

Times: ``t_start`` is Locust's wall-clock reading taken before the request
was sent, and ``t_end`` is read here, when the response reaches the
listener. Both bound the request's real span from outside, so the counter's
real-time order check can claim "a ended before b started" only when it is
certain.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import gevent
import orjson

from loadtest.contract.records import (
    PartWriter,
    Record,
    ipc_bytes,
    table_from_ipc,
    table_from_records,
)
from loadtest.contract.wire import SERVER_HEADER
from loadtest.harness.users import client_number, take_request_facts

log = logging.getLogger(__name__)

MSG_RECORDS = "scalecheck_records"
MAX_BODY = 1 << 20  # bodies above this are not parsed: the record says so
FIELD_CHECK_AFTER = 100  # responses looked at before warning about missing fields


@dataclass(frozen=True)
class FieldSpec:
    """Where to read a value in a response: a JSON field, a header, nowhere (``none``), or
    (a replica's name only) not from the app at all: the balancer names it (``balancer``)."""

    source: str  # "json", "header", "none" or "balancer"
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> FieldSpec:
        word = str(text).strip().lower()
        if word in ("none", "balancer"):
            return cls(word)
        source, sep, name = str(text).partition(":")
        if not sep:
            source, name = "json", str(text)
        if source not in ("json", "header") or not name:
            raise ValueError(f"expected json:FIELD, header:NAME, balancer or none, got {text!r}")
        return cls(source, name)

    @property
    def absent(self) -> bool:
        """The app carries no such value by design (``--counter-field none``)."""
        return self.source == "none"

    @property
    def from_app(self) -> bool:
        """The value is read from the app's response."""
        return self.source in ("json", "header")

    def __str__(self) -> str:
        return self.source if self.source in ("none", "balancer") else \
            f"{self.source}:{self.name}"


class Reading(NamedTuple):
    """What one response says, whatever its shape."""

    status: int
    bytes: int
    hostname: str | None
    counter: int | None
    counter_error: str | None
    server: str | None = None  # the balancer's name for the replica (HAProxy's header)


NO_RESPONSE = Reading(0, 0, None, None, "no response")


def make_extractor(hostname_spec: FieldSpec, counter_spec: FieldSpec) -> Callable:
    """A function ``response -> Reading`` for these two fields; it never raises.

    Built once, so the hot path does not re-decide where to look on every request.
    """
    needs_json = "json" in (hostname_spec.source, counter_spec.source)
    both_json = hostname_spec.source == counter_spec.source == "json"
    host_key, counter_key = hostname_spec.name, counter_spec.name
    no_counter = f"no {counter_spec}"

    def extract(response) -> Reading:
        reading = read(response)
        try:
            server = response.headers.get(SERVER_HEADER) if reading.status else None
        except Exception:  # noqa: BLE001 - a broken response must not break the load test
            server = None
        return reading._replace(server=_text(server, 200)) if server else reading

    def read(response) -> Reading:
        if response is None:
            return NO_RESPONSE
        status = int(getattr(response, "status_code", 0) or 0)
        try:
            content = response.content or b""
        except Exception as exc:  # a broken body must not break the load test
            return Reading(status, 0, None, None, f"unreadable body: {type(exc).__name__}")
        size = len(content)
        if status == 0:
            return Reading(0, size, None, None, "no response")
        body, body_error = None, None
        if needs_json:
            if size == 0:
                body_error = "empty body"
            elif size > MAX_BODY:
                body_error = f"body too large ({size} bytes)"
            else:
                try:
                    body = _loads(content)
                    if not isinstance(body, dict):
                        body, body_error = None, "JSON body is not an object"
                except (ValueError, UnicodeDecodeError):
                    body_error = f"not JSON (status {status})"
        if both_json and body is not None:  # the common case, decided in one step
            host, raw = body.get(host_key), body.get(counter_key)
            if type(raw) is int and (host is None or (type(host) is str and len(host) <= 200)):
                return Reading(status, size, host, raw, None)
        hostname = _read(response, body, hostname_spec) if hostname_spec.from_app else None
        if counter_spec.absent:
            return Reading(status, size, _text(hostname, 200), None, None)
        raw = _read(response, body, counter_spec)
        if raw is None:
            app_error = body.get("counter_error") if body else None
            return Reading(status, size, _text(hostname, 200), None,
                           _text(app_error or body_error or no_counter, 300))
        counter = _as_int(raw)
        error = None if counter is not None else \
            f"{counter_spec} is not an integer: {str(raw)[:40]!r}"
        return Reading(status, size, _text(hostname, 200), counter, error)

    return extract


def _loads(content: bytes):
    """orjson on the hot path (7x faster than json here); what it refuses (integers past
    64 bits, say) gets the standard library's judgement, so nothing readable is lost."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def extract(response, hostname_spec: FieldSpec, counter_spec: FieldSpec) -> Reading:
    """One-off form of ``make_extractor`` (tests, probes)."""
    return make_extractor(hostname_spec, counter_spec)(response)


def _read(response, body, spec: FieldSpec):
    if spec.source == "header":
        try:
            return response.headers.get(spec.name)
        except Exception:
            return None
    if spec.source == "none":
        return None
    return body.get(spec.name) if body else None


def _text(value, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isascii() and text.lstrip("-").isdigit():
            return int(text)
    return None


@dataclass
class FieldCheck:
    """Counts, over the first responses, how many lacked the configured fields."""

    hostname_spec: FieldSpec
    counter_spec: FieldSpec
    responses: int = 0
    no_hostname: int = 0
    no_counter: int = 0
    done: bool = False

    def feed(self, table) -> list[str]:
        """Look at a batch; once enough responses were seen, return warnings (once)."""
        if self.done:
            return []
        status = table.column("status").to_numpy(zero_copy_only=False)
        # Only the app's own successful answers say whether the fields are right: a
        # balancer's 502/503 with every replica down carries neither, and is no typo.
        answered = (status >= 200) & (status < 300)
        n = int(answered.sum())
        if n == 0:
            return []
        hosts = table.column("hostname").is_null().to_numpy(zero_copy_only=False)
        counters = table.column("counter").is_null().to_numpy(zero_copy_only=False)
        self.responses += n
        self.no_hostname += int((hosts & answered).sum())
        self.no_counter += int((counters & answered).sum())
        if self.responses < FIELD_CHECK_AFTER:
            return []
        self.done = True
        warnings = []
        for spec, missing, option in ((self.hostname_spec, self.no_hostname, "--hostname-field"),
                                      (self.counter_spec, self.no_counter, "--counter-field")):
            if spec.from_app and missing * 2 > self.responses:
                warnings.append(f"{missing} of the first {self.responses} successful responses "
                                "carried no "
                                f"{spec}: check {option} (every check that needs it will say "
                                "'not checked')")
        return warnings


_NO_OP = (None, None, None, None, None)


def _operation(context: dict) -> tuple:
    """(op, key, value, seen, outcome) of a request that said what it did
    (``loadtest.ops``)."""
    declared = context.get("outcome")
    return (context["op"], context.get("key"), _json(context.get("value")),
            _json(context["seen"]) if "seen" in context else None,
            None if declared is None else str(declared)[:40])


def auto_user(number: int) -> int:
    """The ``user`` recorded for the ``number``-th Locust user of a process that gave no
    ``context()`` id: negative (-2, -3, ...), so it never meets a scenario's own ids; -1
    stays "not known" (records written before every user was a client)."""
    return -1 - number


def _json(value) -> str:
    """JSON text (a read that saw nothing is "null", not a missing value)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, default=str)


def warm_up() -> None:
    """Pay pyarrow's one-time start-up now, not at the first flush in the middle of the
    test: its first conversion of a Python list imports pandas (~0.7 s of CPU here),
    which would stall the load generator while it is being measured."""
    table_from_records([Record(0.0, 0.0, 0.0, 0, None, None, None, None, 0, 0, 0, "", "", "",
                               0, None, None, None, None, None, None, None, None)])


class Collector:
    """Buffers records and flushes them; one per Locust process."""

    def __init__(
        self,
        environment,
        hostname_spec: FieldSpec,
        counter_spec: FieldSpec,
        writer: PartWriter | None = None,
        worker: str = "local",
        flush_interval: float = 1.0,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.environment = environment
        self.writer = writer
        self.worker = worker
        self.flush_interval = flush_interval
        self.stage = (-1, 0)  # (index, scale level) as last announced
        self.received_from: dict[str, int] = {}  # master: rows per worker
        self.seen = 0  # requests this process's listener saw
        self.dropped: dict[int, int] = {}  # open model: arrivals with no free user, per second
        self.dropped_total: dict[int, int] = {}  # owner of the records: all of them, per second
        self.on_warning = on_warning or (lambda text: log.warning("scalecheck: %s", text))
        self.taps: list[Callable] = []  # owner: each written batch is shown to these too
        self._rows: list[Record] = []
        self._greenlet = None
        self.set_fields(hostname_spec, counter_spec)
        environment.events.request.add_listener(self.on_request)
        warm_up()

    def set_fields(self, hostname_spec: FieldSpec, counter_spec: FieldSpec) -> None:
        self.hostname_spec, self.counter_spec = hostname_spec, counter_spec
        self._extract = make_extractor(hostname_spec, counter_spec)
        self.field_check = FieldCheck(hostname_spec, counter_spec)

    # The hot path: one reading of the response, one append.
    def on_request(self, request_type, name, response_time, response_length, response=None,
                   context=None, exception=None, start_time=None, _now=time.time,
                   _facts=take_request_facts, _client=client_number, _auto_user=auto_user,
                   **_kwargs) -> None:
        t_end = _now()
        try:
            hidden, request_id = _facts()
            reading = self._extract(response)
            status = reading.status
            if exception is not None:
                error = f"{type(exception).__name__}: {exception}"[:500]
            elif status == 0 or status >= 400:  # records.is_error, inlined on the hot path
                error = f"HTTP {status}"
            else:
                error = None
            if context:
                user, intended = context.get("user"), context.get("intended")
                op = context.get("op")
            else:
                user, intended, op = None, None, None
            if user is None:  # each Locust user is a client of its own (users.client_number)
                user = _auto_user(_client())
            stage, level = self.stage
            self.seen += 1
            self._rows.append(Record(
                float(start_time) if start_time is not None else t_end - (response_time or 0) / 1e3,
                t_end, float(response_time or 0.0), status, error, reading.hostname,
                reading.counter, reading.counter_error, stage, level, user, self.worker,
                request_type, name, int(response_length or reading.bytes or 0), intended,
                None if hidden is None else 1 + hidden, reading.server, request_id,
                *(_operation(context) if op else _NO_OP)))
        except Exception:  # never let the recorder break the load test
            log.exception("scalecheck: could not record a request")

    def count_dropped(self, when: float) -> None:
        """An arrival of the open model found no free user (k6's dropped_iterations)."""
        second = int(when)
        self.dropped[second] = self.dropped.get(second, 0) + 1

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._flush_loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        self.flush()

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(self.flush_interval)
            try:
                self.flush()
            except Exception as exc:
                log.error("scalecheck: flush failed (%s); records kept for the next try", exc)

    def flush(self) -> int:
        if not self._rows and not self.dropped:
            return 0
        rows, self._rows = self._rows, []
        dropped, self.dropped = self.dropped, {}
        table = table_from_records(rows)
        try:
            if self.writer is not None:
                self._write(table)
                self._merge_dropped(dropped)
            else:
                self.environment.runner.send_message(
                    MSG_RECORDS, {"worker": self.worker, "rows": len(rows),
                                  "ipc": ipc_bytes(table),
                                  "dropped": {str(k): v for k, v in dropped.items()}})
        except Exception:
            self._rows[:0] = rows  # keep them; the next flush retries
            for second, count in dropped.items():
                self.dropped[second] = self.dropped.get(second, 0) + count
            raise
        return len(rows)

    def _merge_dropped(self, dropped: dict) -> None:
        for second, count in dropped.items():
            self.dropped_total[int(second)] = self.dropped_total.get(int(second), 0) + count

    def _write(self, table) -> None:
        self.writer.write(table)
        for warning in self.field_check.feed(table):
            self.on_warning(warning)
        for tap in self.taps:
            try:
                tap(table)
            except Exception:
                log.exception("scalecheck: a record tap failed")

    # -- master side of distributed runs --------------------------------------

    def on_records_message(self, environment=None, msg=None, **_kwargs) -> None:
        data = msg.data
        table = table_from_ipc(data["ipc"])
        try:
            self._write(table)
        except OSError as exc:  # a full disk: the writer keeps the error, the run fails
            log.error("scalecheck: %d records from %s not written: %s", table.num_rows,
                      data.get("worker", "?"), exc.strerror or exc)
            return
        self._merge_dropped(data.get("dropped") or {})
        worker = data.get("worker", "?")
        self.received_from[worker] = self.received_from.get(worker, 0) + table.num_rows
