"""Fixtures that start real parts: redis-server, the embedded stack, Locust runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import locust  # noqa: F401 - gevent must patch before anything imports ssl or sockets
import psutil
import pytest
import redis

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtest" / "hello.py"
STACK_PROGRAMS = ("haproxy", "redis-server", "traefik")
# Every process this test session starts inherits this mark: on a machine shared with other
# checkouts running stacks of their own, only ours count as left behind.
SESSION_MARK = "SCALECHECK_TEST_SESSION"
os.environ.setdefault(SESSION_MARK, f"{os.getpid()}-{os.urandom(4).hex()}")


#: What a test needs, lightest first (the markers pyproject registers). Each test gets the
#: heaviest of: its module's need (``MODULE_NEEDS``), its own marks, and what its fixtures
#: start; a test that says nothing is a unit test. The fast loop (``make test-fast``)
#: selects ``not slow and not stack and not docker and not kubernetes``.
NEEDS = ("unit", "process", "stack", "docker", "kubernetes")
#: Modules whose every test needs at least this (the others start at unit).
MODULE_NEEDS = {
    "test_analyze_cli.py": "process",   # analyze.py and scalecheck as commands
    "test_ci_outputs.py": "process",
    "test_system_deps.py": "process",   # scripts/system-deps.sh
    "test_bad_input.py": "stack",       # Locust runs, some of which start a stack
    "test_e2e_local.py": "stack",
    "test_exposure.py": "stack",
    "test_faults.py": "stack",
    "test_relative_paths.py": "stack",
    "test_stack_cli.py": "stack",
    "test_stack_local.py": "stack",
    "test_state_e2e.py": "stack",
    "test_survivors.py": "stack",
    "test_views.py": "stack",
    "test_your_app.py": "stack",
}
#: Fixtures that start stack parts (redis-server, replicas, a balancer) or watch for them.
STACK_FIXTURES = {"redis_server", "no_leftovers", "haproxy", "traefik_api", "shop"}
#: Fixtures that start or need the Docker engine.
DOCKER_FIXTURES = {"engine", "docker_engine", "shop_image"}


def pytest_collection_modifyitems(config, items):
    """One need per test (``NEEDS``), so that ``-m "not stack and not docker"`` selects by
    what a test starts, whatever file it sits in."""
    for item in items:
        marks = [NEEDS.index(m.name) for m in item.iter_markers() if m.name in NEEDS]
        need = max([NEEDS.index(MODULE_NEEDS.get(item.path.name, "unit")), *marks])
        fixtures = set(item.fixturenames)
        if fixtures & STACK_FIXTURES:
            need = max(need, NEEDS.index("stack"))
        if fixtures & DOCKER_FIXTURES:
            need = max(need, NEEDS.index("docker"))
        if "kubernetes" in item.path.parts:
            need = NEEDS.index("kubernetes")
        if NEEDS[need] not in {m.name for m in item.iter_markers()}:
            item.add_marker(NEEDS[need])


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def need(part: str, reason: str) -> None:
    """A part the project installs is missing. In CI that is a failure (a green run must
    never hide an untested part); elsewhere the test skips, saying why."""
    print(f"{part}: {reason}")
    if in_ci():
        pytest.fail(f"CI=true and {part} is missing: {reason}", pytrace=False)
    pytest.skip(f"{part}: {reason}")


def free_port() -> int:
    from loadtest.stack.base import free_port as _free

    return _free()


#: Where this session's stacks live (run directories under pytest's base temporary
#: directory, or under the repository): filled in when the session starts.
OUR_PLACES: list[str] = [str(ROOT)]


@pytest.fixture(scope="session", autouse=True)
def _our_places(tmp_path_factory):
    OUR_PLACES.append(str(tmp_path_factory.getbasetemp()))


def _started_here(proc: psutil.Process) -> bool:
    """Started by this session: its environment carries the mark, or, where the process
    overwrote its environment with its title (redis-server does), it works in one of
    this session's places (Redis runs in its run directory)."""
    try:
        environ = proc.environ()
        if "PATH" in environ:
            return environ.get(SESSION_MARK) == os.environ[SESSION_MARK]
        cwd = proc.cwd()
    except psutil.AccessDenied:
        return True  # cannot tell: count it
    except psutil.Error:
        return False
    return any(cwd == place or cwd.startswith(place + os.sep) for place in OUR_PLACES)


def _pid_namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def stack_processes() -> set[int]:
    """PIDs of everything a stack started by this test session may start (to prove none
    is left behind).

    Processes in containers (another PID namespace) are Docker's business, not
    ours: a Redis or a replica in a container looks the same from here. Nor are those
    of another session on the same machine (``SESSION_MARK``)."""
    found = set()
    ours = _pid_namespace("self")
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if _pid_namespace(proc.info["pid"]) != ours:
                continue
            cmd = " ".join(proc.info["cmdline"] or [])
            replica = any(mark in cmd for mark in
                          ("scalecheck_hello.serve", "tests/apps/", "-m shop"))
            if (proc.info["name"] in STACK_PROGRAMS or replica) and _started_here(proc):
                found.add(proc.info["pid"])
        except psutil.Error:
            continue
    return found


@pytest.fixture
def no_leftovers():
    """Fail the test if it leaves a stack process running."""
    before = stack_processes()
    yield
    deadline = time.monotonic() + 10
    while (left := stack_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes left running: {[psutil.Process(p).cmdline() for p in left]}"


@pytest.fixture
def redis_server():
    if shutil.which("redis-server") is None:
        need("redis-server", "not installed (make test installs it as root)")
    port = free_port()
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


def run_locust(args: list[str], env: dict | None = None, timeout: float = 180,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the real locustfile as a user would, bounded in time."""
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the end which parts were missing, and why (in CI they failed the run)."""
    from tests.docker_engine import SKIPPED

    if SKIPPED:
        terminalreporter.write_sep("!", "PARTS MISSING: THEIR TESTS DID NOT RUN", red=True,
                                   bold=True)
        for reason in SKIPPED:
            terminalreporter.write_line(f"  {reason}", red=True)
