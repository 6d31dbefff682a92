"""Which replica served each request, as the balancer saw it: Traefik's access log joined
to the records after the run.

Traefik cannot put the server it chose into a response header, but its JSON access
log names it (``ServiceAddr``) beside the request's ``X-Scalecheck-Id`` (kept by
name). After the run, the harness reads that log and the record parts side by side,
in time order, and fills each record's ``server`` with the replica that had that
address at that time (from the stack's own events: addresses are reused, by ports
on the embedded stack and by containers' IPs under Docker). A request Traefik
answered itself (no route, no server up) has no server: it stays null, and the
status says the rest.

Memory stays bounded: the log is read forward only as far as the part being filled
needs, and an entry leaves memory once its record is named, or once it is far
behind the records (its record was never written: a run cut short).
"""

from __future__ import annotations

import bisect
import calendar
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from loadtest.contract import events as ev
from loadtest.contract.records import SCHEMA, part_files
from loadtest.contract.wire import REQUEST_ID_HEADER

ID_FIELD = f"request_{REQUEST_ID_HEADER}"
SLACK_S = 10.0  # how far the log may run ahead of, or lag behind, the records


@dataclass
class AddressBook:
    """address -> the replicas that had it, and from when (from the stack's events)."""

    by_address: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: list[dict]) -> AddressBook:
        book = cls()
        for event in sorted(events or [], key=lambda e: e.get("t", 0)):
            if event.get("event") == ev.REPLICA_ADDED and event.get("address"):
                book.by_address.setdefault(str(event["address"]), []).append(
                    (float(event["t"]), str(event["hostname"])))
        return book

    def name(self, address: str, t: float) -> str | None:
        """The replica that had ``address`` at ``t``: the last one added before it (a
        balancer may route a moment before the harness records the addition)."""
        owners = self.by_address.get(address)
        if not owners:
            return None
        i = bisect.bisect_right([a for a, _ in owners], t + 2.0)
        return owners[max(0, i - 1)][1]


@dataclass
class JoinResult:
    named: int = 0          # records given a server
    unmatched: int = 0      # records with an id the log does not have
    unknown_address: int = 0  # the log names an address no replica had
    no_server: int = 0      # Traefik answered itself

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_access_log(path: Path) -> Iterator[tuple[str, float, str | None]]:
    """(request id, start time, server address or None) per line that carries an id."""
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError:
        return
    with handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill: nothing to learn from it
            request_id = entry.get(ID_FIELD)
            if not request_id:
                continue
            yield (request_id, _epoch(entry.get("StartUTC")),
                   entry.get("ServiceAddr") or None)


def join_servers(run_dir: Path, access_log: Path, events: list[dict]) -> JoinResult:
    """Fill ``server`` in every record part of ``run_dir`` from Traefik's access log.
    Each part is rewritten atomically (a temporary file, then a rename)."""
    result = JoinResult()
    book = AddressBook.from_events(events)
    log = read_access_log(access_log)
    pending: dict[str, tuple[float, str | None]] = {}
    exhausted = False
    for part in part_files(run_dir):
        table = pq.read_table(part)
        if "request_id" not in table.column_names or table.num_rows == 0:
            continue
        ids = table.column("request_id").to_pylist()
        ends = table.column("t_end").to_numpy(zero_copy_only=False)
        horizon = float(ends.max()) + SLACK_S
        while not exhausted:  # read the log as far as this part needs
            entry = next(log, None)
            if entry is None:
                exhausted = True
                break
            request_id, t, address = entry
            pending[request_id] = (t, address)  # the last line wins: a redirect's final hop
            if t > horizon:
                break
        servers = table.column("server").to_pylist() if "server" in table.column_names \
            else [None] * table.num_rows
        for i, request_id in enumerate(ids):
            if request_id is None or servers[i] is not None:
                continue
            found = pending.pop(request_id, None)
            if found is None:
                result.unmatched += 1
                continue
            t, address = found
            if address is None:
                result.no_server += 1
                continue
            name = book.name(address, t)
            if name is None:
                result.unknown_address += 1
                name = address
            servers[i] = name
            result.named += 1
        _rewrite(part, table, servers)
        cutoff = float(table.column("t_start").to_numpy(zero_copy_only=False).min()) - SLACK_S
        for request_id in [k for k, (t, _) in pending.items() if t < cutoff]:
            del pending[request_id]
    return result


def _rewrite(part: Path, table: pa.Table, servers: list) -> None:
    column = pa.array(servers, type=SCHEMA.field("server").type)
    if "server" in table.column_names:
        table = table.set_column(table.column_names.index("server"), "server", column)
    else:
        table = table.append_column(SCHEMA.field("server"), column)
    tmp = part.with_suffix(".tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, part)
    finally:
        tmp.unlink(missing_ok=True)


_UTC = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?")


def _epoch(text: str | None) -> float:
    match = _UTC.match(text or "")
    if not match:
        return 0.0
    seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds + float("0." + (match.group(2) or "0"))
