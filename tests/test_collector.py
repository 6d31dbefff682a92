"""The collector fed by real Locust requests against a real (misbehaving) server."""

from __future__ import annotations

import http.server
import socket
import threading

import pyarrow.parquet as pq
import pytest
from locust.contrib.fasthttp import FastHttpSession
from locust.env import Environment

from loadtest.contract.records import PartWriter, part_files
from loadtest.harness.collector import Collector, FieldSpec, extract

BODIES = {
    "/ok": (200, "application/json", b'{"hostname": "h1", "visits": 7}'),
    "/str": (200, "application/json", b'{"hostname": "h2", "visits": "8"}'),
    "/redis-down": (200, "application/json",
                    b'{"hostname": "h3", "visits": null, "counter_error": "ConnectionError: x"}'),
    "/malformed": (200, "application/json", b'{"hostname": "h1", "vis'),
    "/html503": (503, "text/html", b"<html><body>No server is available</body></html>"),
    "/empty": (200, "application/json", b""),
    "/huge": (200, "application/json", b'{"pad": "' + b"x" * (2 << 20) + b'"}'),
    "/list": (200, "application/json", b"[1, 2]"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.connection.close()
            return
        status, ctype, body = BODIES[self.path]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", "hdr-host")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def record_all(server, tmp_path, paths, hostname="json:hostname", counter="json:visits"):
    env = Environment()
    collector = Collector(env, FieldSpec.parse(hostname), FieldSpec.parse(counter),
                          writer=PartWriter(tmp_path, "test"))
    collector.stage = (2, 3)
    session = FastHttpSession(server, env.events.request, user=None, max_retries=0)
    for path in paths:
        session.get(path, context={"user": 42})
    assert collector.flush() == len(paths)
    return pq.read_table(part_files(tmp_path)[0]).to_pylist()


def test_every_kind_of_response_becomes_a_record(server, tmp_path):
    paths = ["/ok", "/str", "/redis-down", "/malformed", "/html503", "/empty", "/huge",
             "/list", "/reset"]
    rows = {p: r for p, r in zip(paths, record_all(server, tmp_path, paths))}
    assert rows["/ok"]["hostname"] == "h1" and rows["/ok"]["counter"] == 7
    assert rows["/ok"]["error"] is None and rows["/ok"]["stage"] == 2
    assert rows["/ok"]["scale_level"] == 3 and rows["/ok"]["user"] == 42
    assert rows["/ok"]["t_end"] > rows["/ok"]["t_start"]
    assert rows["/str"]["counter"] == 8
    assert rows["/redis-down"]["counter"] is None
    assert rows["/redis-down"]["counter_error"].startswith("ConnectionError")
    assert rows["/malformed"]["counter_error"].startswith("not JSON")
    assert rows["/html503"]["status"] == 503 and "503" in rows["/html503"]["error"]
    assert rows["/empty"]["counter_error"] == "empty body"
    assert "too large" in rows["/huge"]["counter_error"]
    assert rows["/list"]["counter_error"] == "JSON body is not an object"
    assert rows["/reset"]["status"] == 0 and rows["/reset"]["error"]


def test_each_greenlet_is_a_client_of_its_own_unless_its_context_says(server, tmp_path):
    """Two Locust users (greenlets) with no context(): two clients, each with one number
    for all its requests; a context's ``user`` wins; a declared outcome is recorded."""
    import gevent

    from loadtest.ops import operation, outcome

    env = Environment()
    collector = Collector(env, FieldSpec.parse("json:hostname"), FieldSpec.parse("none"),
                          writer=PartWriter(tmp_path, "test"))
    session = FastHttpSession(server, env.events.request, user=None, max_retries=0)

    def user(paths, context=None):
        for path in paths:
            session.get(path, context=context or {})

    def declared():
        with session.get("/ok", context=operation("write", "k", 1),
                         catch_response=True) as resp:
            outcome(resp, "unknown")

    gevent.joinall([gevent.spawn(user, ["/ok", "/str"]), gevent.spawn(user, ["/ok", "/str"]),
                    gevent.spawn(user, ["/ok"], {"user": 7}), gevent.spawn(declared)])
    collector.flush()
    rows = pq.read_table(part_files(tmp_path)[0]).to_pylist()
    users = [r["user"] for r in rows]
    assert users.count(7) == 1
    auto = [u for u in users if u != 7]
    assert len(set(auto)) == 3 and all(u < -1 for u in auto)  # -2, -3, ...: never a scenario's
    assert sorted(auto.count(u) for u in set(auto)) == [1, 2, 2]
    write = next(r for r in rows if r["op"] == "write")
    assert write["outcome"] == "unknown" and write["value"] == "1"


def test_header_sources(server, tmp_path):
    rows = record_all(server, tmp_path, ["/ok"], hostname="header:X-Served-By")
    assert rows[0]["hostname"] == "hdr-host" and rows[0]["counter"] == 7


def test_field_spec_parsing():
    assert FieldSpec.parse("visits") == FieldSpec("json", "visits")
    assert FieldSpec.parse("header:X-Count") == FieldSpec("header", "X-Count")
    with pytest.raises(ValueError):
        FieldSpec.parse("xml:visits")


def test_extract_without_response():
    assert extract(None, FieldSpec("json", "h"), FieldSpec("json", "v"))[4] == "no response"


class _Body:
    def __init__(self, content: bytes, status: int = 200, headers: dict | None = None):
        self.content, self.status_code, self.headers = content, status, headers or {}


@pytest.mark.parametrize("content, expected", [
    (b'{"hostname": "hello-1", "visits": 7}', ("hello-1", 7, None)),
    (b'{"hostname": "hello-1", "visits": "7"}', ("hello-1", 7, None)),
    (b'{"hostname": "hello-1", "visits": true}', ("hello-1", None, "json:visits is not an "
                                                   "integer: 'True'")),
    (b'{"hostname": "hello-1", "visits": 1.5}', ("hello-1", None, "json:visits is not an "
                                                  "integer: '1.5'")),
    (b'{"hostname": "hello-1", "counter_error": "Timeout"}', ("hello-1", None, "Timeout")),
    (b'{"hostname": 12, "visits": 3}', ("12", 3, None)),
    (b'{"visits": 3}', (None, 3, None)),
    (b'[1, 2]', (None, None, "JSON body is not an object")),
    (b'<html>', (None, None, "not JSON (status 200)")),
    (b'{"hostname": "h", "visits": 123456789012345678901234567890}',
     ("h", None, "json:visits is not an integer: '1.2345678901234568e+29'")),
])
def test_extract_reads_every_shape_the_same_way(content, expected):
    """The fast path (both fields in JSON, an integer counter) and the general one agree."""
    reading = extract(_Body(content), FieldSpec("json", "hostname"), FieldSpec("json", "visits"))
    assert (reading.hostname, reading.counter, reading.counter_error) == expected


def test_the_field_check_looks_only_at_the_app_s_own_answers():
    """A balancer's 502/503 with every replica down carries no fields: that is no typo."""
    from loadtest.contract.records import Record, table_from_records
    from loadtest.harness.collector import FieldCheck

    def batch(status, hostname, counter, n=150):
        return table_from_records([Record(1.0, 1.1, 1.0, status, None, hostname, counter, None,
                                          0, 1, 0, "local", "GET", "/", 10, None)] * n)
    spec = (FieldSpec("json", "hostname"), FieldSpec("json", "visits"))
    down = FieldCheck(*spec)
    assert down.feed(batch(503, None, None)) == [] and not down.done
    typo = FieldCheck(*spec)
    warnings = typo.feed(batch(200, "hello-1", None))
    assert len(warnings) == 1 and "--counter-field" in warnings[0]
