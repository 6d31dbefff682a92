"""Every attempt on the wire is counted: geventhttpclient's silent resend is seen.

The server here is a small socket server of the test's own, not a replica: it answers
the first request on a connection, then reads the second one and closes without an
answer, as a replica killed mid-request does. That is the one behaviour we need, made
deterministic (a real replica killed at the right microsecond is not)."""

from __future__ import annotations

import socket
import threading

import gevent
from locust.env import Environment

from loadtest.harness.users import ScalecheckHttpUser, take_hidden_attempts

ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          b"Connection: keep-alive\r\n\r\n{}")


def _serve(listener: socket.socket, stop: threading.Event) -> None:
    """Per connection: answer the first request, swallow the second and hang up."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)
                conn.sendall(ANSWER)
                conn.recv(65536)  # the next request arrives ... and the "replica" dies
            except OSError:
                pass


def test_a_silent_resend_is_counted_as_an_attempt():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, stop), daemon=True)
    thread.start()
    seen = []

    class User(ScalecheckHttpUser):
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"

    env = Environment(user_classes=[User])
    env.events.request.add_listener(
        lambda **kw: seen.append((kw["exception"], take_hidden_attempts())))
    user = User(env)
    try:
        def three():
            for _ in range(3):
                user.client.get("/")

        gevent.spawn(three).join(timeout=20)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert len(seen) == 3
    # 1st: a fresh connection, answered. 2nd: sent on the kept-alive one, which closes;
    # the client resends on a new connection, answered: one hidden attempt. 3rd: the same.
    assert [exc for exc, _ in seen] == [None, None, None]
    assert [hidden for _, hidden in seen] == [0, 1, 1]


def test_a_plain_fasthttpuser_is_not_counted():
    assert take_hidden_attempts() is None  # nothing recorded for this greenlet


def test_the_request_goes_out_with_its_own_headers_and_body():
    """The request id is added without touching the caller's headers: each header keeps
    its value (a careless copy of geventhttpclient's Headers sends names as values, and
    the app then refuses every JSON body with 400)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    received = []

    def serve_once():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"[1, 2]"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            received.append(data)
            conn.sendall(ANSWER)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()

    class User(ScalecheckHttpUser):
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"

    user = User(Environment(user_classes=[User]))
    try:
        status = gevent.spawn(lambda: user.client.put(
            "/kv/a", json=[1, 2], headers={"Accept": "application/json"}).status_code
        ).get(timeout=20)
    finally:
        thread.join(5)
        listener.close()
    assert status == 200
    head, _, body = received[0].partition(b"\r\n\r\n")
    sent: dict[bytes, list[bytes]] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        sent.setdefault(name.strip().lower(), []).append(value.strip())
    assert sent[b"content-type"] == [b"application/json"], sent
    assert sent[b"accept"] == [b"application/json"], sent
    assert len(sent[b"x-scalecheck-id"]) == 1 and sent[b"x-scalecheck-id"][0], sent
    assert all(len(values) == 1 for values in sent.values()), sent
    assert body == b"[1, 2]"


def test_only_requests_the_stop_cut_short_do_not_make_a_failed_run():
    """Locust keys its failures by the exception's repr: cut short at the stop alone is
    forgiven (exit 0 stays possible); one stalled request, or any other failure, is not."""
    from locust.stats import RequestStats

    from loadtest.harness.users import CutShortAtStop, StoppedInFlight, cut_short_only

    stats = RequestStats()
    stats.log_error("GET", "/", CutShortAtStop("no answer 0.0 s after it was sent"))
    stats.log_error("GET", "/", CutShortAtStop("no answer 0.0 s after it was sent"))
    assert cut_short_only(stats.errors.values()) == 2
    stats.log_error("GET", "/", StoppedInFlight("no answer 4.0 s after it was sent"))
    assert cut_short_only(stats.errors.values()) == 0
    other = RequestStats()
    other.log_error("GET", "/", CutShortAtStop("x"))
    other.log_error("GET", "/", ConnectionResetError("reset"))
    assert cut_short_only(other.errors.values()) == 0
    assert cut_short_only(RequestStats().errors.values()) == 0
