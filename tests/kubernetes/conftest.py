"""The throwaway cluster for the Kubernetes tests: built and started once per session.

Outside CI a missing part (not root, no Go, a Debian package missing) skips
these tests and says why; with CI=true it is a failure, so CI never passes
without having run them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from loadtest.stack.kubernetes import Cluster, Settings, binaries

IN_CI = os.environ.get("CI") == "true"
#: The session's cluster once started, so that a test needing the machine to itself
#: (the harness starting its own cluster) can stop it first.
SESSION: dict[str, Cluster] = {}


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail under CI."""
    if IN_CI:
        pytest.fail(f"Kubernetes tests cannot run in CI: {reason}", pytrace=False)
    print(f"\nskipping the Kubernetes tests: {reason}")
    pytest.skip(reason)


def cluster_prerequisites() -> binaries.Binaries:
    if os.geteuid() != 0:
        skip_or_fail("the cluster needs root (network interfaces, cgroups, mounts)")
    if not Path("/sys/fs/cgroup/pids").is_dir():
        skip_or_fail("no cgroup v1 pids hierarchy under /sys/fs/cgroup")
    missing = binaries.missing_host_programs()
    if missing:
        skip_or_fail(f"missing Debian packages: {' '.join(missing)} "
                     "(SCALECHECK_WITH_KUBE=1 sh scripts/system-deps.sh)")
    if shutil.which("go") is None:
        skip_or_fail("go is not installed (the components are built with Go)")
    try:
        return binaries.ensure()
    except binaries.BuildError as exc:
        pytest.fail(f"building Kubernetes failed: {exc}", pytrace=False)
        raise


@pytest.fixture(scope="session")
def kube_binaries() -> binaries.Binaries:
    return cluster_prerequisites()


@pytest.fixture(scope="session")
def cluster(kube_binaries, tmp_path_factory):
    """A started cluster (HPA every 5 s, so the HPA test is quick); stopped at the end.

    SCALECHECK_KUBE_PROXY_MODE=nftables runs kube-proxy in nftables mode.

    The last test of test_cluster.py stops it itself, to assert nothing is left."""
    workdir = tmp_path_factory.mktemp("kube")  # pytest keeps the last runs' logs there
    settings = Settings(hpa_sync_period_s=5.0, metric_resolution_s=10.0,
                        proxy_mode=os.environ.get("SCALECHECK_KUBE_PROXY_MODE", "iptables"))
    cluster = Cluster(workdir, settings, bins=kube_binaries)
    cluster.start(timeout=240, wait_for_machine=900)  # another suite's cluster may be up
    SESSION["cluster"] = cluster
    yield cluster
    cluster.stop()
    print(f"\nKubernetes component logs: {cluster.layout.logs}")


@pytest.fixture
def running_cluster(cluster):
    """The session's cluster, started again if a test stopped it (test_cluster.py's last
    test does, to assert that nothing is left)."""
    if not cluster.api.ok("/readyz"):
        cluster.start(timeout=240, wait_for_machine=900)
    return cluster


def stop_session_cluster() -> None:
    """Free the machine for a cluster the harness starts itself (one per machine)."""
    cluster = SESSION.get("cluster")
    if cluster is not None:
        left = cluster.stop()
        assert left == [], left
