"""scripts/system-deps.sh, as `make test` runs it: a dpkg lock held by another apt is
waited for, and under CI=true a part that cannot be installed fails, naming it."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

pytestmark = pytest.mark.slow  # the real install script, and a dpkg lock waited for

SCRIPT = ROOT / "scripts" / "system-deps.sh"
LOCK = "/var/lib/dpkg/lock-frontend"


def _root_with_apt() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        need("root with apt-get", "the script installs packages only as root on Debian")


def test_a_held_dpkg_lock_is_waited_for(tmp_path):
    """haproxy hidden from PATH, so the script asks apt-get for it (already installed: no
    download) while this test holds the lock apt takes, as another apt-get would."""
    _root_with_apt()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("redis-server", "python3"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    hold = 3.0
    with open(LOCK, "a") as fh:  # noqa: SIM117 - the lock is held while the script starts
        fcntl.lockf(fh, fcntl.LOCK_EX)
        started = time.monotonic()
        proc = subprocess.Popen(["sh", str(SCRIPT)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
        time.sleep(hold)
        fcntl.lockf(fh, fcntl.LOCK_UN)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= hold
    assert "installing Debian packages: haproxy" in err and "could not" not in err


def test_under_ci_a_part_that_cannot_be_installed_fails_naming_it():
    """Not root (nobody), so nothing can be installed; debootstrap is hidden from PATH."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the script as another user")
    with tempfile.TemporaryDirectory() as top:  # pytest's own is closed to other users
        os.chmod(top, 0o755)
        _as_nobody(Path(top) / "bin")


def _as_nobody(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for tool in ("redis-server", "haproxy", "python3", "dockerd", "docker-compose", "ip",
                 "nsenter"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SCALECHECK_WITH_DOCKER": "1"}
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", str(SCRIPT)]
    in_ci = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           env={**env, "CI": "true"})
    assert in_ci.returncode == 1
    assert in_ci.stderr.strip().splitlines()[-1].startswith(
        "scalecheck: CI=true and the Docker and Kubernetes tests need:")
    assert "debootstrap" in in_ci.stderr
    elsewhere = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert elsewhere.returncode == 0
    assert "the Docker and Kubernetes tests will be skipped" in elsewhere.stderr


def test_under_ci_an_unreachable_engine_fails_the_docker_tests(tmp_path):
    """The suite's own Docker tests, with no engine to reach and dockerd not on PATH: under
    CI=true they fail; elsewhere they skip, saying why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").symlink_to(shutil.which("docker") or "/bin/false")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.path.dirname(sys.executable)}:/usr/bin:/bin",
           "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    test = "tests/test_compose.py::test_unknown_service_is_one_line"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    in_ci = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**env, "CI": "true"})
    assert in_ci.returncode == 1, in_ci.stdout[-1500:]
    assert "1 error" in in_ci.stdout and "dockerd is not installed" in in_ci.stdout
    elsewhere = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                               env={**env, "CI": ""})
    assert elsewhere.returncode == 0 and "1 skipped" in elsewhere.stdout, elsewhere.stdout
