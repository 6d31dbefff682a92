"""The hello app against a real Redis: counters, content negotiation, health."""

from __future__ import annotations

import threading

import pytest

from app import create_app
from app.counter import make_counter


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
