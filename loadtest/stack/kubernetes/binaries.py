"""The cluster's programs: built once per Kubernetes version, found on the next run.

``scripts/kube-build.sh`` builds from the Go module proxy into a per-version
cache (about 8 minutes on 2 cores the first time, instant after); this module
runs it and names what it built. etcd is Debian's (``etcd-server``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "kube-build.sh"
# What the cluster runs besides our build, and the Debian package bringing it.
HOST_PROGRAMS = {"etcd": "etcd-server", "containerd": "containerd", "ctr": "containerd",
                 "runc": "runc", "containerd-shim-runc-v2": "containerd",
                 "iptables": "iptables", "ip": "iproute2"}
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CNI_BIN_DIR = Path("/usr/lib/cni")


class BuildError(RuntimeError):
    """The Kubernetes build failed, or a program the cluster needs is missing."""


@dataclass(frozen=True)
class Binaries:
    """Where each program of the cluster is."""

    bin_dir: Path
    etcd: str

    @property
    def kube(self) -> Path:
        """The multicall binary: ``kube kube-apiserver ...``, ``kube kubelet ...``."""
        return self.bin_dir / "kube"

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def pause(self) -> Path:
        return self.bin_dir / "pause"

    @property
    def hello(self) -> Path:
        return self.bin_dir / "hello"


def missing_host_programs() -> list[str]:
    """Debian packages still to install for the cluster (empty when all is there)."""
    packages = {pkg for prog, pkg in HOST_PROGRAMS.items() if shutil.which(prog) is None}
    if any(not (CNI_BIN_DIR / p).exists() for p in CNI_PLUGINS):
        packages.add("containernetworking-plugins")
    return sorted(packages)


def build(timeout: float = 3600) -> Path:
    """Run the build script (a no-op when its stamp matches); return the bin directory."""
    if shutil.which("go") is None:
        raise BuildError("go is not installed: the cluster's components are built with Go")
    result = subprocess.run(["sh", str(BUILD_SCRIPT)], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-5:]
        raise BuildError(f"{BUILD_SCRIPT.name} failed ({result.returncode}): {' | '.join(tail)}")
    return Path(result.stdout.strip().splitlines()[-1])


def ensure(timeout: float = 3600) -> Binaries:
    """Everything the cluster runs, building Kubernetes if needed."""
    missing = missing_host_programs()
    if missing:
        raise BuildError(f"missing Debian packages: {' '.join(missing)} "
                         "(SCALECHECK_WITH_KUBE=1 sh scripts/system-deps.sh installs them)")
    bin_dir = build(timeout)
    etcd = shutil.which("etcd")
    assert etcd is not None
    return Binaries(bin_dir=bin_dir, etcd=etcd)
