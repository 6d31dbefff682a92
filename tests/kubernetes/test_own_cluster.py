"""``--stack kubernetes`` with no --kubeconfig: the harness starts a throwaway cluster
under the run directory and removes it at the end, whatever ends the run.

Runs after test_cluster.py and test_killed_owner.py (alphabetically); the session's
cluster is stopped first, as one cluster runs per machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loadtest.stack.kubernetes import leftovers
from loadtest.stack.kubernetes.layout import RUN_DIR, Layout
from tests.conftest import LOCUSTFILE, ROOT, free_port, stack_processes
from tests.docker_engine import engine_for_module
from tests.kubernetes.conftest import stop_session_cluster

pytestmark = pytest.mark.kubernetes

engine = pytest.fixture(scope="module", name="engine")(engine_for_module)


@pytest.fixture
def machine(kube_binaries, tmp_path):
    """The machine without a cluster; after the test, exactly as before it (the cluster
    package's leftovers check: processes, mounts, interfaces, network namespaces,
    cgroups, chains, files), and no process of the harness."""
    stop_session_cluster()
    run_dir = tmp_path / "run"
    layout = Layout(run_dir / "stack" / "kube")
    before, procs = leftovers.current(layout), stack_processes()
    yield run_dir
    assert sorted(leftovers.current(layout).items - before.items) == []
    assert not RUN_DIR.exists()
    assert stack_processes() == procs


def locust(run_dir: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "locust"), "-f", str(LOCUSTFILE), "--headless",
            "--stack", "kubernetes", "--run-dir", str(run_dir), "--stack-port",
            str(free_port()), "--api-port", str(free_port()), *args]


def test_the_hello_app_with_no_other_option(engine, machine):
    """``locust -f loadtest/hello.py --headless --stack kubernetes``: the default plan
    (shortened by SCALECHECK_MAX_RUN_TIME, as the docs' commands are), the hello app and
    Redis applied from the default manifests, a verdict, then nothing left."""
    started = time.monotonic()
    proc = subprocess.run(locust(machine, "--min-steady", "2s"), capture_output=True,
                          text=True, timeout=900, cwd=ROOT,
                          env={**os.environ, "SCALECHECK_MAX_RUN_TIME": "15s"})
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((machine / "run.json").read_text())
    cluster = run["stack"]["kubernetes"]
    print(f"\nthe whole run took {took:.1f} s; the cluster started in {cluster['start_s']} s")
    assert run["status"] == "completed" and cluster["cluster"] == "embedded"
    assert [s["level"] for s in run["stages"]] == [1, 2, 4]
    assert (machine / "logs" / "pods").is_dir()
    assert (machine / "stack" / "kube" / "logs" / "kube-apiserver.log").exists()
    verdict = subprocess.run([sys.executable, str(ROOT / "analyze.py"), str(machine)],
                             capture_output=True, text=True, timeout=180)
    assert verdict.returncode == 0, verdict.stdout[-3000:]


def test_sigterm_mid_run_takes_the_cluster_down(engine, machine):
    """SIGTERM while the load runs: the run is recorded as interrupted (exit 143), and the
    cluster it started is gone (the fixture)."""
    proc = subprocess.Popen(locust(machine, "--scale-levels", "2", "--stage-time", "60s"),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            cwd=ROOT)
    lines: list[str] = []
    spawned = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "All users spawned" in line:
                spawned.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600  # a first build of Kubernetes included
        while not spawned.wait(1) and proc.poll() is None and time.monotonic() < deadline:
            pass
        assert spawned.is_set(), "".join(lines[-30:])
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(180) == 143, "".join(lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
        reader.join(10)
    run = json.loads((machine / "run.json").read_text())
    assert run["status"] == "interrupted"
    assert run["totals"]["recorded"] > 0
