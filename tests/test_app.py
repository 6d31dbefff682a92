"""The hello app against a real Redis: counters, content negotiation, health."""

from __future__ import annotations

import sys
import threading

import pytest

from scalecheck_hello import create_app
from scalecheck_hello.counter import make_counter


def client_for(redis_port: int, **settings):
    app = create_app({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": redis_port,
                      "COUNTER_KEY": "test-counter", "HOSTNAME": "hello-test", **settings})
    return app.test_client()


def test_json_reports_hostname_and_increasing_visits(redis_server):
    client = client_for(redis_server)
    first = client.get("/", headers={"Accept": "application/json"}).get_json()
    second = client.get("/", headers={"Accept": "application/json"}).get_json()
    assert first["hostname"] == "hello-test"
    assert second["visits"] == first["visits"] + 1
    assert first["counter_error"] is None


def test_browser_gets_the_workshop_page(redis_server):
    resp = client_for(redis_server, NAME="Ada").get("/", headers={"Accept": "text/html"})
    html = resp.get_data(as_text=True)
    assert resp.mimetype == "text/html"
    assert "Hello Ada!" in html and "hello-test" in html and "Visits:" in html


def test_page_and_health_survive_redis_down():
    client = client_for(1, REDIS_TIMEOUT=0.2)  # nothing listens on port 1
    body = client.get("/", headers={"Accept": "application/json"}).get_json()
    assert body["visits"] is None and "ConnectionError" in body["counter_error"]
    assert "counter disabled" in client.get("/").get_data(as_text=True)
    assert client.get("/health").status_code == 200


def test_health_fails_while_draining(redis_server):
    draining = False
    app = create_app({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": redis_server},
                     is_draining=lambda: draining)
    client = app.test_client()
    assert client.get("/health").status_code == 200
    draining = True
    assert client.get("/health").status_code == 503
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 200


def _hammer(counter, n: int, out: list) -> None:
    out.extend(counter.increment() for _ in range(n))


@pytest.mark.parametrize("mode,expect_unique", [("atomic", True), ("racy", False)])
def test_counter_modes_under_concurrency(redis_server, mode, expect_unique):
    import redis

    values: list[int] = []
    threads = []
    for _ in range(4):
        client = redis.Redis(host="127.0.0.1", port=redis_server)
        counter = make_counter(mode, client, f"c-{mode}")
        threads.append(threading.Thread(target=_hammer, args=(counter, 300, values)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(values) == 1200
    assert (len(set(values)) == len(values)) is expect_unique


def test_local_mode_counts_per_process():
    a = make_counter("local", None, "k")
    b = make_counter("local", None, "k")
    assert [a.increment(), a.increment(), b.increment()] == [1, 2, 1]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="COUNTER_MODE"):
        make_counter("eventual", None, "k")


def test_cpu_and_wait_cost_per_request(redis_server):
    import time

    client = client_for(redis_server, CPU_MS=30.0, WAIT_MS=40.0)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 200
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    assert cpu >= 0.030, f"burnt only {cpu * 1000:.1f} ms of CPU"
    assert wall >= 0.070, f"took only {wall * 1000:.1f} ms in all"
    assert client.get("/health").status_code == 200


# -- keyed data and sessions: KV_MODE and SESSION_MODE ----------------------------------

def replicas(redis_port: int, n: int = 2, **settings):
    """``n`` app instances on one Redis, as replicas behind a balancer would be; cookies
    are sent by hand, as each user's own."""
    return [create_app({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": redis_port,
                        "HOSTNAME": f"hello-{i + 1}", **settings}).test_client(use_cookies=False)
            for i in range(n)]


def put(client, key, value):
    import json

    return client.put(f"/kv/{key}", data=json.dumps(value),
                      content_type="application/json")


def test_kv_redis_mode_every_replica_reads_the_last_write(redis_server):
    a, b = replicas(redis_server)
    assert b.get("/kv/cart").get_json() == {"key": "cart", "value": None,
                                            "hostname": "hello-2"}
    resp = put(a, "cart", {"items": [1, 2]})
    assert resp.status_code == 200 and resp.headers["X-Served-By"] == "hello-1"
    assert b.get("/kv/cart").get_json()["value"] == {"items": [1, 2]}
    put(b, "cart", "v2")
    assert a.get("/kv/cart").get_json()["value"] == "v2"
    bad = a.put("/kv/cart", data="not json")
    assert bad.status_code == 400 and bad.get_json()["hostname"] == "hello-1"


def test_kv_cached_mode_serves_stale_values_until_the_copy_expires(redis_server):
    import time

    a, b = replicas(redis_server, KV_MODE="cached", KV_CACHE_TTL=0.5)
    put(a, "k", "v1")
    assert b.get("/kv/k").get_json()["value"] == "v1"     # b keeps a copy
    put(a, "k", "v2")
    assert a.get("/kv/k").get_json()["value"] == "v2"     # a reads its own write
    assert b.get("/kv/k").get_json()["value"] == "v1"     # b: stale
    time.sleep(0.6)
    assert b.get("/kv/k").get_json()["value"] == "v2"     # copy expired


def test_sets_append_in_order_and_cached_mode_misses_new_elements(redis_server):
    import json

    a, b = replicas(redis_server)
    for element in ("x", "y", "x"):
        resp = a.post("/set/s", data=json.dumps(element), content_type="application/json")
        assert resp.status_code == 200
    assert resp.get_json() == {"key": "s", "value": "x", "length": 3, "hostname": "hello-1"}
    assert b.get("/set/s").get_json()["value"] == ["x", "y", "x"]
    c, d = replicas(redis_server, KV_MODE="cached", KV_CACHE_TTL=30)
    assert d.get("/set/t").get_json()["value"] == []
    c.post("/set/t", data=json.dumps(1), content_type="application/json")
    assert c.get("/set/t").get_json()["value"] == [1]
    assert d.get("/set/t").get_json()["value"] == []       # d's copy is stale


def test_sessions_in_redis_are_known_to_every_replica(redis_server):
    a, b = replicas(redis_server)
    resp = a.post("/login", data={"user": "ada"})
    assert resp.status_code == 200 and resp.get_json() == {"user": "ada",
                                                           "hostname": "hello-1"}
    sid = resp.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    cookie = {"Cookie": f"hello_session={sid}"}
    me = b.get("/me", headers=cookie)
    assert me.status_code == 200 and me.get_json() == {"user": "ada", "hostname": "hello-2"}
    assert a.post("/login", json={"user": "bob"}).get_json()["user"] == "bob"
    fresh = client_for(redis_server).get("/me")
    assert fresh.status_code == 401 and fresh.get_json()["user"] is None
    assert a.post("/login", data={}).status_code == 400


def test_sessions_in_memory_are_lost_on_another_replica(redis_server):
    a, b = replicas(redis_server, SESSION_MODE="memory")
    sid = a.post("/login", data={"user": "ada"}).headers["Set-Cookie"].split(";")[0]
    cookie = {"Cookie": sid}
    assert a.get("/me", headers=cookie).status_code == 200
    other = b.get("/me", headers=cookie)
    assert other.status_code == 401 and other.get_json() == {"user": None,
                                                             "hostname": "hello-2"}


def test_state_modes_are_checked():
    with pytest.raises(ValueError, match="KV_MODE"):
        client_for(1, KV_MODE="eventual")
    with pytest.raises(ValueError, match="SESSION_MODE"):
        client_for(1, SESSION_MODE="sticky")


def test_state_modes_are_checked_for_counters_and_lists():
    with pytest.raises(ValueError, match="TALLY_MODE"):
        client_for(1, TALLY_MODE="eventual")
    with pytest.raises(ValueError, match="LIST_MODE"):
        client_for(1, LIST_MODE="sorted")


def _interleaved(run, threads: int) -> None:
    """run(0) … run(threads - 1) at once, switching threads often, as replicas on several
    cores would interleave: with Python's 5 ms default a busy machine could run each
    read-modify-write whole."""
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)


def _add_from_threads(clients, route: str, bodies: list, threads: int = 8) -> None:
    """Each body POSTed once to ``route``, by ``threads`` threads over the replicas."""
    import json

    def run(t: int) -> None:
        for i in range(t, len(bodies), threads):
            resp = clients[i % len(clients)].post(route, data=json.dumps(bodies[i]),
                                                   content_type="application/json")
            assert resp.status_code == 200, resp.get_json()

    _interleaved(run, threads)


@pytest.mark.parametrize("mode,whole", [("atomic", True), ("racy", False)])
def test_tally_modes_under_concurrency(redis_server, mode, whole):
    """400 adds of 1 to 3 through two replicas: the atomic counter has them all; the
    read-modify-write one loses some."""
    a, b = replicas(redis_server, TALLY_MODE=mode)
    key = f"likes-{mode}"
    amounts = [1 + i % 3 for i in range(400)]
    _add_from_threads([a, b], f"/tally/{key}", amounts)
    total = b.get(f"/tally/{key}").get_json()
    assert total["hostname"] == "hello-2"
    assert (total["value"] == sum(amounts)) is whole, total
    assert a.post(f"/tally/{key}", data="1.5", content_type="application/json"
                  ).status_code == 400


@pytest.mark.parametrize("mode,whole", [("redis", True), ("racy", False)])
def test_list_modes_under_concurrency(redis_server, mode, whole):
    """300 appends through two replicas: RPUSH keeps them all, in one order; the JSON
    document read, appended to and written back loses some."""
    a, b = replicas(redis_server, LIST_MODE=mode)
    key = f"log-{mode}"
    elements = [f"e{i}" for i in range(300)]
    _add_from_threads([a, b], f"/list/{key}", elements)
    got = a.get(f"/list/{key}").get_json()["value"]
    assert len(set(got)) == len(got)
    assert (sorted(got) == sorted(elements)) is whole, len(got)


def test_retrying_modes_apply_a_command_twice_under_a_redis_stall(redis_server):
    """A frozen Redis: the retrying client re-sends the add, then the append, after its
    timeout on the connection it had open; once Redis wakes, both attempts take effect."""
    import os
    import signal
    import time

    import redis

    direct = redis.Redis(host="127.0.0.1", port=redis_server)
    pid = direct.info("server")["process_id"]
    app = client_for(redis_server, REDIS_TIMEOUT=0.3, TALLY_MODE="retrying",
                     LIST_MODE="retrying")
    app.post("/tally/stall", data="0", content_type="application/json")  # connected

    def stalled(route: str, body: str) -> int:
        status = []
        os.kill(pid, signal.SIGSTOP)
        try:
            worker = threading.Thread(target=lambda: status.append(app.post(
                route, data=body, content_type="application/json").status_code))
            worker.start()
            time.sleep(0.8)
        finally:
            os.kill(pid, signal.SIGCONT)
        worker.join()
        return status[0]

    stalled("/tally/stall", "5")
    stalled("/list/stall", '"x"')
    time.sleep(0.2)
    assert int(direct.get("tally:stall")) >= 10          # 5 added twice or more
    assert direct.lrange("list:stall", 0, -1).count(b'"x"') >= 2


def test_state_requests_time_out_once_without_retry(redis_server):
    """A frozen Redis (the pause-redis fault): each request answers 503 within about
    REDIS_TIMEOUT, and Redis receives each command at most once, even with the counter's
    retrying mode (whose client retries)."""
    import os
    import signal
    import time

    import redis

    direct = redis.Redis(host="127.0.0.1", port=redis_server)
    pid = direct.info("server")["process_id"]
    app = client_for(redis_server, REDIS_TIMEOUT=0.3, COUNTER_MODE="retrying")
    assert put(app, "warm", 0).status_code == 200       # connection open before the freeze
    app.post("/login", data={"user": "warm"})
    before = direct.info("commandstats")
    os.kill(pid, signal.SIGSTOP)
    try:
        timings = []
        for call in (lambda: put(app, "frozen", 1), lambda: app.get("/kv/frozen"),
                     lambda: app.post("/login", data={"user": "ada"})):
            started = time.perf_counter()
            resp = call()
            timings.append(time.perf_counter() - started)
            assert resp.status_code == 503 and resp.get_json()["hostname"] == "hello-test"
            assert "Timeout" in resp.get_json()["error"]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert max(timings) < 0.9, f"took {timings}: retried?"
    time.sleep(0.2)
    after = direct.info("commandstats")

    def calls(stats, name):
        return stats.get(f"cmdstat_{name}", {}).get("calls", 0)

    # The PUT's SET went out once on the open connection; after its timeout the
    # connection is dropped, and the next ones may time out while connecting, before
    # their command is sent: never more than one of each.
    assert 1 <= calls(after, "set") - calls(before, "set") <= 2
    assert calls(after, "get") - calls(before, "get") <= 1


def _drive(clients, ops_per_thread: int, threads: int, seed: int) -> list:
    """Clients (one per replica) used round robin by a few threads, each a process of the
    history, writing unique values, reading, adding, logging in; what each request did is
    recorded as an operation, the way a scenario would."""
    import json
    import random
    import time

    from loadtest.analysis.history import Op

    ops, lock = [], threading.Lock()

    def run(t: int) -> None:
        rng = random.Random(seed + t)
        process = f"local/{t}"
        for i in range(ops_per_thread):
            client = clients[(t + i) % len(clients)]
            key = f"k{rng.randrange(3)}"
            roll = rng.random()
            start = time.time()
            if roll < 0.3:
                value = f"{process}:{i}"
                resp = put(client, key, value)
                f, k, sent, seen = "write", key, value, None
            elif roll < 0.6:
                resp = client.get(f"/kv/{key}")
                f, k, sent, seen = "read", key, None, resp.get_json()["value"]
            elif roll < 0.7:
                element = f"{process}:{i}"
                resp = client.post("/set/s", data=json.dumps(element),
                                   content_type="application/json")
                f, k, sent, seen = "add", "s", element, None
            elif roll < 0.8:
                resp = client.get("/set/s")
                f, k, sent, seen = "read-all", "s", None, resp.get_json()["value"]
            elif roll < 0.85 or i == 0:
                resp = client.post("/login", data={"user": process})
                client_cookie[process] = resp.headers["Set-Cookie"].split(";")[0]
                f, k, sent, seen = "login", None, process, None
            else:
                resp = client.get("/me", headers={"Cookie": client_cookie.get(process, "")})
                f, k, sent, seen = "session", None, None, resp.get_json()["user"]
            end = time.time()
            body = resp.get_json()
            with lock:
                ops.append(Op(process, f, k, sent, seen, "ok" if resp.status_code < 500
                              else "unknown", start, end, body["hostname"],
                              resp.status_code))

    client_cookie: dict[str, str] = {}
    _interleaved(run, threads)
    return sorted(ops, key=lambda o: o.t_start)


def test_correct_modes_pass_the_state_checks(redis_server):
    from loadtest.analysis.state_checks import state_checks, state_findings
    from loadtest.analysis.thresholds import Thresholds

    clients = replicas(redis_server, n=3)
    history = _drive(clients, ops_per_thread=150, threads=4, seed=1)
    checks = state_checks(state_findings(history), Thresholds())
    failed = [(c.name, c.evidence) for c in checks if c.passed is False]
    assert not failed
    assert {c.name for c in checks if c.passed} >= {
        "register_linearizable", "session_read_your_writes", "session_monotonic_reads",
        "set_lost", "set_unexpected", "set_stale", "sessions_honoured"}


def test_faulty_modes_fail_the_right_checks_naming_the_replica(redis_server):
    from loadtest.analysis.state_checks import state_checks, state_findings
    from loadtest.analysis.thresholds import Thresholds

    clients = replicas(redis_server, n=3, KV_MODE="cached", KV_CACHE_TTL=5,
                       SESSION_MODE="memory")
    history = _drive(clients, ops_per_thread=150, threads=4, seed=2)
    checks = {c.name: c for c in state_checks(state_findings(history), Thresholds())}
    for name in ("register_linearizable", "session_read_your_writes", "set_stale",
                 "sessions_honoured"):
        assert checks[name].passed is False, name
    bad = checks["register_linearizable"].evidence["violations"][0]
    assert bad["replica"] in {"hello-1", "hello-2", "hello-3"}
    assert bad["message"].startswith(bad["process"])
    assert set(checks["sessions_honoured"].evidence["by_replica"]) <= {
        "hello-1", "hello-2", "hello-3"}
