"""Record every request: which replica served it and the counter value it saw.

Shaped like Locust's ``csv_request_logger``: the ``request`` listener only
appends a tuple; a greenlet flushes at least every second. On a worker the
flush sends the batch to the master through Locust's own messaging, so no
shared filesystem is needed; the master (or a local runner) writes Parquet
parts into the run directory.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import gevent

from loadtest.records import PartWriter, ipc_bytes, table_from_ipc, table_from_rows

log = logging.getLogger(__name__)

MSG_RECORDS = "scalecheck_records"
MSG_STAGE = "scalecheck_stage"
MAX_BODY = 1 << 20  # bodies above this are not parsed: the record says so


@dataclass(frozen=True)
class FieldSpec:
    """Where to read a value in a response: a JSON field or a header."""

    source: str  # "json" or "header"
    name: str

    @classmethod
    def parse(cls, text: str) -> FieldSpec:
        source, sep, name = text.partition(":")
        if not sep:
            source, name = "json", text
        if source not in ("json", "header") or not name:
            raise ValueError(f"expected json:FIELD or header:NAME, got {text!r}")
        return cls(source, name)

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


def extract(response, hostname_spec: FieldSpec, counter_spec: FieldSpec):
    """(status, bytes, hostname, counter, counter_error) from any response; never raises."""
    status = int(getattr(response, "status_code", 0) or 0) if response is not None else 0
    try:
        content = response.content if response is not None else None
    except Exception as exc:  # a broken body must not break the load test
        return status, 0, None, None, f"unreadable body: {type(exc).__name__}"
    content = content or b""
    size = len(content)
    if status == 0:
        return status, size, None, None, "no response"
    body, body_error = None, None
    if "json" in (hostname_spec.source, counter_spec.source):
        if size == 0:
            body_error = "empty body"
        elif size > MAX_BODY:
            body_error = f"body too large ({size} bytes)"
        else:
            try:
                body = json.loads(content)
                if not isinstance(body, dict):
                    body, body_error = None, "JSON body is not an object"
            except (ValueError, UnicodeDecodeError):
                body_error = f"not JSON (status {status})"
    hostname = _read(response, body, hostname_spec)
    counter_raw = _read(response, body, counter_spec)
    counter, counter_error = None, None
    if counter_raw is None:
        app_error = body.get("counter_error") if body else None
        counter_error = app_error or body_error or f"no {counter_spec}"
    else:
        counter = _as_int(counter_raw)
        if counter is None:
            counter_error = f"{counter_spec} is not an integer: {str(counter_raw)[:40]!r}"
    return status, size, (str(hostname)[:200] if hostname is not None else None), counter, (
        str(counter_error)[:300] if counter_error else None
    )


def _read(response, body, spec: FieldSpec):
    if spec.source == "header":
        try:
            return response.headers.get(spec.name)
        except Exception:
            return None
    return body.get(spec.name) if body else None


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


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
    ) -> None:
        self.environment = environment
        self.hostname_spec = hostname_spec
        self.counter_spec = counter_spec
        self.writer = writer
        self.worker = worker
        self.flush_interval = flush_interval
        self.stage = (-1, 0)  # (index, scale level) as last announced
        self.received_from: dict[str, int] = {}  # master: rows per worker
        self._rows: list[tuple] = []
        self._greenlet = None
        environment.events.request.add_listener(self.on_request)

    # The hot path: keep it to one extract and one append.
    def on_request(self, request_type, name, response_time, response_length, response=None,
                   context=None, exception=None, start_time=None, **_kwargs) -> None:
        try:
            status, size, hostname, counter, counter_error = extract(
                response, self.hostname_spec, self.counter_spec)
            error = None
            if exception is not None:
                error = f"{type(exception).__name__}: {exception}"[:500]
            elif status == 0 or status >= 400:
                error = f"HTTP {status}"
            latency = float(response_time or 0.0)
            t_start = float(start_time) if start_time is not None else 0.0
            user = context.get("user", -1) if isinstance(context, dict) else -1
            self._rows.append((
                t_start, t_start + latency / 1000.0, latency, status, error, hostname, counter,
                counter_error, self.stage[0], self.stage[1], user, self.worker,
                request_type, name, int(response_length or size or 0),
            ))
        except Exception:  # never let the recorder break the load test
            log.exception("scalecheck: could not record a request")

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
            except Exception:
                log.exception("scalecheck: flush failed; records kept for the next try")

    def flush(self) -> int:
        if not self._rows:
            return 0
        rows, self._rows = self._rows, []
        table = table_from_rows(rows)
        try:
            if self.writer is not None:
                self.writer.write(table)
            else:
                self.environment.runner.send_message(
                    MSG_RECORDS,
                    {"worker": self.worker, "rows": len(rows), "ipc": ipc_bytes(table)})
        except Exception:
            self._rows[:0] = rows  # keep them; the next flush retries
            raise
        return len(rows)

    # -- master side of distributed runs --------------------------------------

    def on_records_message(self, environment=None, msg=None, **_kwargs) -> None:
        data = msg.data
        table = table_from_ipc(data["ipc"])
        self.writer.write(table)
        worker = data.get("worker", "?")
        self.received_from[worker] = self.received_from.get(worker, 0) + table.num_rows
