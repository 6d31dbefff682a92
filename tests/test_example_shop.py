"""examples/shop on its own, against real parts: the app served by uvicorn on a loopback
port and a real redis-server; its SIGTERM stop; its faulty variants (three replicas,
exactly one faulty, measured); its own Locust scenario; its image and Compose file on a
real Docker Engine when one can start. The harness is not involved (the lead's tests
drive the example through it)."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import redis
import requests
import yaml

from tests.conftest import ROOT, free_port

SHOP = ROOT / "examples" / "shop"
sys.path.insert(0, str(SHOP))

from shop.faults import ErrorBudget  # noqa: E402
from shop.settings import Settings, SettingsError, settings_from_env  # noqa: E402

#: Headers uvicorn and Starlette send by themselves; none names the host.
PLAIN_HEADERS = {"date", "server", "content-length", "content-type"}


class Replica:
    """One shop process, as a team runs it: ``python -m shop`` in its folder (or ``cmd``)."""

    def __init__(self, redis_port: int | None, tmp: Path, cmd: list[str] | None = None,
                 **env: str) -> None:
        self.port = free_port()
        self.log_path = tmp / f"shop-{self.port}.log"
        redis_env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"} if redis_port else {}
        full_env = {**os.environ, "PORT": str(self.port), "BIND_HOST": "127.0.0.1",
                    **redis_env, **env}
        with open(self.log_path, "wb") as log:
            argv = [a.format(port=self.port) for a in cmd or [sys.executable, "-m", "shop"]]
            self.proc = subprocess.Popen(argv, cwd=SHOP, env=full_env, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url(path), timeout=10, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.url(path), timeout=10, **kw)

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the shop exited: {self.log()}"
            try:
                if requests.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the shop did not become healthy: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def replicas(tmp_path):
    """Start replicas with ``start(redis_port, **env)``; every one is stopped at the end."""
    started: list[Replica] = []

    def start(redis_port: int | None, cmd: list[str] | None = None, **env: str) -> Replica:
        rep = Replica(redis_port, tmp_path, cmd, **env)
        started.append(rep)
        return rep

    yield start
    for rep in started:
        rep.stop()
    assert all(rep.proc.poll() is not None for rep in started)


@pytest.fixture
def shop(replicas, redis_server) -> Replica:
    rep = replicas(redis_server)
    rep.wait_healthy()
    return rep


# -- configuration and the error budget (pure) --------------------------------------


def test_settings_defaults_and_redis_address():
    assert settings_from_env({}) == Settings()
    assert Settings().port == 5000 and Settings().redis_url == "redis://localhost:6379/0"
    env = {"REDIS_URL": "redis://:secret@cache:6379/2", "REDIS_HOST": "10.0.0.9",
           "REDIS_PORT": "7000"}
    assert settings_from_env(env).redis_url == "redis://:secret@10.0.0.9:7000/2"
    assert settings_from_env({"REDIS_PORT": "7001"}).redis_url == "redis://localhost:7001/0"
    assert settings_from_env({"REDIS_HOST": "::1"}).redis_url == "redis://[::1]:6379/0"
    assert settings_from_env({"REDIS_URL": "redis://cache:6379/0"}).redis_url == \
        "redis://cache:6379/0"


@pytest.mark.parametrize("env,word", [
    ({"PORT": "http"}, "PORT"), ({"PORT": "70000"}, "PORT"), ({"FAULT": "crash"}, "FAULT"),
    ({"REDIS_URL": "http://cache"}, "REDIS_URL"), ({"FAULT_ERROR_RATE": "20"}, "share"),
    ({"FAULT_SLOW_FACTOR": "0.5"}, "FAULT_SLOW_FACTOR"), ({"WAIT_MS": "-1"}, "WAIT_MS"),
    ({"REDIS_PORT": "x"}, "REDIS_PORT"),
])
def test_bad_settings_are_one_clear_error(env, word):
    with pytest.raises(SettingsError, match=word):
        settings_from_env(env)


def test_error_budget_fails_every_fifth_request():
    budget = ErrorBudget(0.2)
    fails = [budget.next_fails() for _ in range(100)]
    assert sum(fails) == 20
    assert [i + 1 for i, f in enumerate(fails) if f][:3] == [5, 10, 15]
    assert sum(ErrorBudget(0.0).next_fails() for _ in range(50)) == 0


# -- the endpoints, on a real server over a real Redis ------------------------------


def test_catalogue_and_cart(shop, redis_server):
    products = shop.get("/products")
    assert products.status_code == 200
    ids = [p["id"] for p in products.json()["products"]]
    assert len(ids) == 12 and ids == sorted(ids)
    assert shop.get("/products/p03").json() == {"id": "p03", "name": "Green tea, 100 g",
                                               "price_cents": 690}
    assert shop.get("/products/p99").status_code == 404

    user = f"u-{uuid.uuid4().hex[:8]}"
    assert shop.get(f"/cart/{user}").json() == {"user": user, "items": [], "total_cents": 0}
    first = shop.post(f"/cart/{user}", json={"product": "p03", "qty": 2})
    assert first.status_code == 201 and first.json()["qty"] == 2
    assert shop.post(f"/cart/{user}", json={"product": "p03"}).json()["qty"] == 3
    shop.post(f"/cart/{user}", json={"product": "p06", "qty": 1})
    cart = shop.get(f"/cart/{user}").json()
    assert cart["items"] == [{"product": "p03", "qty": 3, "price_cents": 690},
                             {"product": "p06", "qty": 1, "price_cents": 450}]
    assert cart["total_cents"] == 3 * 690 + 450

    order = shop.post(f"/cart/{user}/checkout")
    assert order.status_code == 201 and order.json()["total_cents"] == 3 * 690 + 450
    assert shop.post(f"/cart/{user}/checkout").status_code == 409  # the cart went with it
    shop.post(f"/cart/{user}", json={"product": "p01"})
    again = shop.post(f"/cart/{user}/checkout").json()
    assert again["order"] == order.json()["order"] + 1  # one sequence
    stored = redis.Redis(port=redis_server).get(f"shop:order:{again['order']}")
    assert stored is not None and b"p01" in stored

    shop.post(f"/cart/{user}", json={"product": "p02"})
    assert shop.http.delete(shop.url(f"/cart/{user}"), timeout=5).status_code == 200
    assert shop.get(f"/cart/{user}").json()["items"] == []


@pytest.mark.parametrize("path,body,status", [
    ("/cart/ann", b"not json", 400), ("/cart/ann", b"[1]", 400),
    ("/cart/ann", b'{"product": "p77"}', 404), ("/cart/ann", b'{"product": "p01", "qty": 0}', 422),
    ("/cart/ann", b'{"product": "p01", "qty": true}', 422),
    ("/cart/a%20b", b'{"product": "p01"}', 400),
])
def test_bad_requests_are_client_errors(shop, path, body, status):
    resp = shop.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status and "error" in resp.json()
    assert shop.http.put(shop.url("/cart/ann"), timeout=5).status_code == 405


def test_no_answer_names_the_host(shop):
    names = {socket.gethostname(), socket.getfqdn()}
    user = "quiet"
    answers = [shop.get("/healthz"), shop.get("/products"), shop.get("/products/p01"),
               shop.post(f"/cart/{user}", json={"product": "p01"}), shop.get(f"/cart/{user}"),
               shop.post(f"/cart/{user}/checkout"), shop.get("/nowhere")]
    for resp in answers:
        assert set(resp.headers) <= PLAIN_HEADERS | {k.title() for k in PLAIN_HEADERS}, \
            resp.headers
        text = resp.text + " ".join(resp.headers.values())
        assert not any(name in text for name in names), (resp.request.url, text)
        assert "hostname" not in resp.text


def test_catalogue_refills_after_the_cache_lost_it(shop, redis_server):
    assert len(shop.get("/products").json()["products"]) == 12
    redis.Redis(port=redis_server).flushall()
    assert len(shop.get("/products").json()["products"]) == 12
    assert redis.Redis(port=redis_server).exists("shop:catalogue") == 1


def test_redis_unreachable_is_503_and_health_stays_up(replicas, redis_server):
    down = replicas(None, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_TIMEOUT="0.2")
    down.wait_healthy()
    for path in ("/products", "/cart/ann"):
        resp = down.get(path)
        assert resp.status_code == 503 and "unavailable" in resp.json()["error"]
    assert down.get("/healthz").status_code == 200
    # REDIS_HOST/REDIS_PORT win over REDIS_URL's address.
    fixed = replicas(None, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                     REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_server))
    fixed.wait_healthy()
    assert fixed.get("/products").status_code == 200


def test_uvicorns_own_command_line_serves_the_same_app(replicas, redis_server):
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    rep = replicas(redis_server, [uvicorn, "shop.asgi:app", "--host", "127.0.0.1",
                                  "--port", "{port}"])
    rep.wait_healthy()
    assert len(rep.get("/products").json()["products"]) == 12
    rep.proc.send_signal(signal.SIGTERM)
    rep.proc.wait(10)
    assert "Application shutdown complete" in rep.log()


@pytest.mark.process
def test_bad_setting_exits_2_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shop"], cwd=SHOP, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "PORT": "web"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == "shop: PORT must be a whole number, not 'web'"


# -- SIGTERM ------------------------------------------------------------------------


def _in_background(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


def test_sigterm_finishes_the_request_in_flight_then_stops(replicas, redis_server):
    rep = replicas(redis_server, WAIT_MS="1500")
    rep.wait_healthy()
    thread, out = _in_background(lambda: requests.get(rep.url("/products"), timeout=10))
    time.sleep(0.5)  # the request is waiting inside the app
    t0 = time.monotonic()
    rep.proc.send_signal(signal.SIGTERM)
    rep.proc.wait(10)
    stopped_after = time.monotonic() - t0
    thread.join(10)
    assert out and out[0].status_code == 200 and len(out[0].json()["products"]) == 12
    # uvicorn ends a SIGTERM stop by re-raising the signal, so that a parent sees it
    assert rep.proc.returncode in (0, -signal.SIGTERM)
    assert stopped_after < 5
    log = rep.log()
    assert "Application shutdown complete" in log and "Finished server process" in log
    with pytest.raises(requests.ConnectionError):
        requests.get(rep.url("/healthz"), timeout=2)


def test_drain_fails_health_and_keeps_serving_then_stops(replicas, redis_server):
    rep = replicas(redis_server, DRAIN_SECONDS="1.5")
    rep.wait_healthy()
    t0 = time.monotonic()
    rep.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert rep.get("/healthz").status_code == 503
    assert rep.get("/products").status_code == 200  # still served while the balancer lets go
    rep.proc.wait(10)
    took = time.monotonic() - t0
    print(f"drain of 1.5 s: stopped {took:.2f} s after SIGTERM")
    assert 1.4 <= took < 5
    assert "drain over: stopping" in rep.log()


# -- the faulty variants: three replicas, exactly one faulty ------------------------


def _three(replicas, redis_server, **env) -> list[Replica]:
    reps = [replicas(redis_server, **env) for _ in range(3)]
    for rep in reps:
        rep.wait_healthy()
    return reps


def _error_shares(reps: list[Replica], n: int) -> list[float]:
    shares = []
    for rep in reps:
        codes = [rep.get("/products").status_code for _ in range(n)]
        assert set(codes) <= {200, 500}, codes
        shares.append(codes.count(500) / n)
    return shares


def test_fault_errors_exactly_one_replica_fails_a_fifth(replicas, redis_server):
    reps = _three(replicas, redis_server, FAULT="errors")
    shares = _error_shares(reps, 200)
    print(f"FAULT=errors, 200 requests to each of 3 replicas: error shares {shares}")
    assert sorted(shares) == [0.0, 0.0, 0.2]
    faulty = reps[shares.index(0.2)]
    assert all(faulty.get("/healthz").status_code == 200 for _ in range(20))  # spared
    assert "now the faulty one" in faulty.log()
    assert sum("now the faulty one" in rep.log() for rep in reps) == 1

    # The faulty replica stops: another one takes the fault over, and only one.
    others = [rep for rep in reps if rep is not faulty]
    faulty.stop()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and not any(_error_shares(others, 5)):
        time.sleep(0.1)
    took = time.monotonic() - t0
    shares = _error_shares(others, 100)  # once taken over, measured afresh
    print(f"after the faulty replica stopped: taken over within {took:.1f} s, "
          f"error shares {shares}")
    assert sorted(shares) == [0.0, 0.2]

    # The new faulty replica dies (SIGKILL, no lease given back): the last one takes over
    # once the lease has run out (3 s).
    dead = others[shares.index(0.2)]
    last = others[1 - shares.index(0.2)]
    dead.proc.kill()
    dead.proc.wait(5)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and not _error_shares([last], 5)[0]:
        time.sleep(0.1)
    took = time.monotonic() - t0
    print(f"after the faulty replica was killed: taken over within {took:.1f} s")
    assert 1.5 < took < 5
    assert _error_shares([last], 100) == [0.2]


def test_fault_errors_fail_before_any_state_changes(replicas, redis_server):
    reps = _three(replicas, redis_server, FAULT="errors", FAULT_ERROR_RATE="1")
    codes = [rep.post("/cart/eve", json={"product": "p01"}).status_code for rep in reps]
    assert sorted(codes) == [201, 201, 500]
    assert redis.Redis(port=redis_server).hget("shop:cart:eve", "p01") == b"2"


def test_fault_slow_exactly_one_replica_ten_times_slower(replicas, redis_server):
    # WAIT_MS=20: the app's own time dominates the client's, so the factor shows through.
    reps = _three(replicas, redis_server, FAULT="slow", WAIT_MS="20")
    medians = []
    for rep in reps:
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            assert rep.get("/products").status_code == 200
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times) * 1000)
    slow = max(medians)
    rest = sorted(medians)[:2]
    print(f"FAULT=slow, WAIT_MS=20, 30 requests to each: medians "
          f"{[round(m, 1) for m in medians]} ms, ratio {slow / max(rest):.1f}")
    assert slow >= 6 * max(rest)  # ten times the app's time; the client's own share is not
    assert all(m < 100 for m in rest)


# -- the team's own Locust scenario --------------------------------------------------


def test_locustfile_runs_every_task_against_the_real_app(shop, redis_server, tmp_path):
    run_dir = tmp_path / "run"
    # --stack external: the harness records, the app is the one started here; the shop
    # names no replica (the harness's warning about it is expected).
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(SHOP / "locustfile.py"),
           "--headless", "-u", "4", "-r", "4", "--stage-time", "6s", "--only-summary",
           "--stack", "external", "-H", f"http://127.0.0.1:{shop.port}",
           "--counter-field", "none", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    records = pd.read_parquet(run_dir / "requests")
    by_name = records.groupby("name").size().to_dict()
    print(f"Locust, 4 shoppers for 6 s: {len(records)} requests {by_name}")
    assert set(by_name) == {"/products", "/products/[id]", "/cart/[user] add", "/cart/[user]",
                            "/cart/[user]/checkout", "/products/[id]/reviews add",
                            "/products/[id]/reviews"}
    assert len(records) >= 80  # 4 users thinking 0.05-0.25 s: about 150
    assert (records["status"].isin([200, 201])).all(), records["status"].value_counts()
    # No context() in the locustfile: each of the 4 shoppers is a client of its own.
    assert records["user"].nunique() == 4 and (records["user"] < -1).all()
    assert int(redis.Redis(port=redis_server).get("shop:orders:seq") or 0) >= 1


# -- the image and the Compose file, on a real Docker Engine -------------------------


@pytest.fixture(scope="module")
def engine():
    from tests.conftest import need
    from tests.docker_engine import SKIPPED, Engine

    eng = Engine()
    if not eng.start():
        SKIPPED.append(eng.reason or "unknown")
        need("the Docker engine", eng.reason or "unknown")
    yield eng
    eng.stop()


def _docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def _compose_config(path: Path) -> dict:
    """The file as Compose reads it: v2 (``docker compose``) where there is one, else v1."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            proc = subprocess.run([*cmd, "-f", str(path), "config"], capture_output=True,
                                  text=True, timeout=60, env={**os.environ, "FAULT": "errors"})
            assert proc.returncode == 0, proc.stderr
            print(f"{' '.join(cmd)} config: parsed ({probe.stdout.strip().splitlines()[0]})")
            return yaml.safe_load(proc.stdout)
    from tests.conftest import need

    need("Compose", "neither docker compose nor docker-compose is installed")


@pytest.mark.docker
def test_image_builds_and_runs_and_the_compose_file_parses(engine, tmp_path):
    images_before = set(_docker("images", "-q", "--no-trunc").split())
    build = subprocess.run(["sh", str(SHOP / "build-image.sh")], capture_output=True, text=True,
                           timeout=1200, env={**os.environ, "PYTHON": sys.executable})
    assert build.returncode == 0, build.stderr[-2000:]
    image = _docker("image", "inspect", "-f", "{{.Id}}", "scalecheck/shop:latest")
    new_images = set(_docker("images", "-q", "--no-trunc").split()) - images_before
    # On an engine without the base image the build makes it first (scripts/
    # docker-images.sh: scalecheck/base, the hello app); anything else, or untagged, is
    # litter.
    tags = {i: _docker("image", "inspect", "-f", "{{join .RepoTags \" \"}}", i).split()
            for i in new_images - {image}}
    litter = {i: t for i, t in tags.items()
              if not t or not all(tag.startswith("scalecheck/") for tag in t)}
    assert not litter, f"the build left other images behind: {litter}"

    cfg = _compose_config(SHOP / "docker-compose.yml")
    services = cfg["services"]
    assert set(services) == {"shop", "cache"}  # no balancer: the harness brings its own
    shop, cache = services["shop"], services["cache"]
    ports = [str(p.get("published")) + ":" + str(p.get("target")) if isinstance(p, dict)
             else str(p) for p in shop["ports"]]
    assert ports == ["5000:5000"]
    env = shop["environment"]
    env = env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)
    assert env["REDIS_URL"] == "redis://cache:6379/0" and env["FAULT"] == "errors"
    assert "/healthz" in " ".join(shop["healthcheck"]["test"])
    assert cache["command"][0] == "redis-server"
    assert shop["image"] == "scalecheck/shop:latest"

    # The image runs as the Compose file runs it: beside a Redis named cache, on a
    # network of its own, reached only through 127.0.0.1; the Compose healthcheck passes.
    tag = f"shoptest-{uuid.uuid4().hex[:8]}"
    try:
        _docker("network", "create", tag)
        _docker("run", "-d", "--name", f"{tag}-cache", "--network", tag, "--network-alias",
                "cache", "scalecheck/base:bookworm", *cache["command"])
        _docker("run", "-d", "--name", f"{tag}-shop", "--network", tag, "-p", "127.0.0.1::5000",
                "-e", "REDIS_URL=redis://cache:6379/0", "scalecheck/shop:latest")
        host_port = _docker("port", f"{tag}-shop", "5000/tcp").splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{host_port}"
        deadline = time.monotonic() + 30
        products = None
        while time.monotonic() < deadline:
            try:
                products = requests.get(f"{base}/products", timeout=2)
                if products.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        assert products is not None and products.status_code == 200, \
            _docker("logs", f"{tag}-shop", check=False)
        assert len(products.json()["products"]) == 12
        assert requests.post(f"{base}/cart/ann", json={"product": "p01"}, timeout=5).json() \
            == {"user": "ann", "product": "p01", "qty": 1}
        check = subprocess.run(["docker", "exec", f"{tag}-shop", *shop["healthcheck"]["test"][1:]],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        python = _docker("exec", f"{tag}-shop", "python", "--version")
        print(f"image runs on {python}; healthcheck passes")
        stop_t0 = time.monotonic()
        _docker("stop", f"{tag}-shop")
        assert time.monotonic() - stop_t0 < 8  # SIGTERM stopped it, not the 10 s SIGKILL
    finally:
        for name in (f"{tag}-shop", f"{tag}-cache"):
            _docker("rm", "-f", "-v", name, check=False)
        _docker("network", "rm", tag, check=False)
    assert not _docker("ps", "-a", "-q", "--filter", f"name={tag}")
    assert tag not in _docker("network", "ls", "--format", "{{.Name}}")
