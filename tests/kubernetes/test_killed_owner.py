"""A cluster whose owner is SIGKILLed: its components die with it, and the next
start() clears the rest (pods' processes, shims, mounts, interfaces, chains).

Runs after test_cluster.py (one cluster per machine: that one is stopped by then).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from loadtest.stack.kubernetes import Cluster, images, leftovers, stop_all, sweep
from loadtest.stack.kubernetes.layout import Layout
from loadtest.stack.kubernetes.sweep import cluster_pids

pytestmark = pytest.mark.kubernetes

OWNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from loadtest.stack.kubernetes import Cluster, images
    cluster = Cluster(Path(sys.argv[1]))
    cluster.start(timeout=240, wait_for_machine=300)
    cluster.load_program_image(images.HELLO_IMAGE, cluster.bins.hello)
    cluster.api.create("/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan"},
        "spec": {"containers": [{"name": "hello", "image": images.HELLO_IMAGE,
                                 "imagePullPolicy": "Never"}]}})
    for _ in range(240):
        pod = cluster.api.get("/api/v1/namespaces/default/pods/orphan")
        if pod.get("status", {}).get("phase") == "Running":
            break
        time.sleep(0.5)
    print("READY", pod["status"]["podIP"], flush=True)
    time.sleep(600)
""")
COMPONENTS = ("etcd", "kube", "containerd")


def _component_pids(layout: Layout) -> set[int]:
    """The owner's direct children (not the shims or the pods' processes)."""
    found = set()
    for pid in cluster_pids(layout.owned_roots()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if name in COMPONENTS:
            found.add(pid)
    return found


def test_killed_owner_then_next_start_clears_everything(kube_binaries, tmp_path):
    stop_all()  # the session's cluster, if a test before left it running
    first = Layout(tmp_path / "killed")
    before = leftovers.snapshot(first)
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(first.workdir)],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline()
        assert line.startswith("READY"), f"the owner did not get a pod running: {line!r}"
    finally:
        owner.kill()
        owner.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _component_pids(first) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _component_pids(first), "components outlived their SIGKILLed owner"
    remains = leftovers.leftovers(before, first)
    kinds = Counter(item.split()[0] for item in remains)
    print(f"\nleft by the killed run: {dict(kinds)}")
    assert remains, "a killed run leaves its pods' processes and mounts (nothing to test)"

    started = time.monotonic()
    second = Cluster(tmp_path / "next", bins=kube_binaries)
    second.start(timeout=240, wait_for_machine=300)
    print(f"next start, clearing the killed run first: {time.monotonic() - started:.1f} s")
    assert sweep.mounts_under([first.workdir]) == [], "the killed run's mounts"
    second.load_program_image(images.HELLO_IMAGE, kube_binaries.hello)
    assert second.stop() == []
    assert leftovers.leftovers(before, first) == []
