"""Which cluster a run uses: the user's (``--kubeconfig``) or a throwaway one of its own.

- **The user's** (kind, minikube, k3d, a real one): checked to answer before anything is
  created (one line when it does not); the run touches nothing of it outside its own
  namespace. Images come from wherever that cluster pulls them. When the kubeconfig
  points at this machine's embedded cluster (tests do, to share one), the harness
  also reaches its runtime: images are loaded and faults act on containers.
- **The embedded one**: started under the run's directory (``stack/kube``), stopped at
  the end with everything it made, whatever ends the run (``down`` is on every ending
  path; a killed harness takes its components with it, and the next start sweeps the
  rest). One runs per machine: if another is up, the run waits for it.

Starting it builds Kubernetes first if this machine never did (about 8 minutes on 2
cores), then takes about 10 s.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from loadtest.stack.base import StackError
from loadtest.stack.kubernetes.rest import Kube, KubeError
from loadtest.stack.kubernetes.runtime import Runtime, embedded_runtime

log = logging.getLogger("scalecheck")
#: How long a run waits for another run's embedded cluster to stop.
MACHINE_WAIT_S = 900.0


class Target:
    """A cluster the run can use once ``start`` returned."""

    kind = "cluster"

    def __init__(self) -> None:
        self.kube: Kube | None = None
        self.runtime: Runtime | None = None
        self.version: str | None = None

    @property
    def loads_images(self) -> bool:
        """The harness puts Docker's images into this cluster itself (no registry)."""
        return self.runtime is not None

    def preflight(self) -> None:  # noqa: B027 - optional
        """What can be checked before anything is created."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> list[str]:
        """Release the cluster; what it left behind (the embedded one), else []."""
        if self.kube is not None:
            self.kube.close()
        return []

    def describe(self) -> dict:
        return {"cluster": self.kind, "server": self.kube.server if self.kube else None,
                "kubernetes_version": self.version,
                "runtime_socket": str(self.runtime.socket) if self.runtime else None}


class UserCluster(Target):
    kind = "kubeconfig"

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__()
        self.path = Path(kubeconfig)

    def preflight(self) -> None:
        if self.kube is not None:
            return
        if not self.path.is_file():
            raise StackError(f"--kubeconfig {self.path}: no such file")
        kube = Kube(self.path)
        try:
            self.version = kube.version()
        except KubeError as exc:
            kube.close()
            raise StackError(f"--kubeconfig {self.path}: {exc}") from None
        self.kube = kube
        self.runtime = embedded_runtime(kube.server)

    def start(self) -> None:
        self.preflight()

    def describe(self) -> dict:
        return {**super().describe(), "kubeconfig": str(self.path),
                "embedded": self.runtime is not None}


class EmbeddedCluster(Target):
    kind = "embedded"

    def __init__(self, workdir: Path, wait_for_machine: float = MACHINE_WAIT_S) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.wait_for_machine = wait_for_machine
        self.cluster = None
        self.left: list[str] = []

    def preflight(self) -> None:
        from loadtest.stack.kubernetes import binaries

        if os.geteuid() != 0:
            raise StackError("the embedded Kubernetes needs root (network interfaces, "
                             "cgroups, mounts): run as root, or point --kubeconfig at a "
                             "cluster")
        missing = binaries.missing_host_programs()
        if missing:
            raise StackError(f"the embedded Kubernetes needs Debian packages: "
                             f"{' '.join(missing)} (SCALECHECK_WITH_KUBE=1 sh "
                             "scripts/system-deps.sh installs them)")
        if shutil.which("go") is None and not built():
            raise StackError("the embedded Kubernetes is built with Go, which is not "
                             "installed (make kube-build installs and builds it)")

    def start(self) -> None:
        from loadtest.stack.kubernetes import Cluster, ClusterError, MachineBusy

        if not built():
            log.warning("scalecheck: building Kubernetes once on this machine (about 8 "
                        "minutes on 2 cores); later runs start in about 10 s")
        self.cluster = Cluster(self.workdir / "kube")
        try:
            try:
                self.cluster.start(wait_for_machine=0.0)
            except MachineBusy as exc:
                log.warning("scalecheck: %s; waiting for it to stop (at most %.0f min)",
                            exc, self.wait_for_machine / 60)
                self.cluster.start(wait_for_machine=self.wait_for_machine)
        except (ClusterError, MachineBusy) as exc:
            raise StackError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the build's own errors: one line
            raise StackError(f"the embedded Kubernetes did not start: {exc}") from None
        log.info("scalecheck: embedded Kubernetes up in %.1f s",
                 self.cluster.timings.get("start", 0.0))
        self.kube = Kube(self.cluster.kubeconfig)
        self.version = self.kube.version()
        self.runtime = Runtime(self.cluster.containerd_socket)

    def stop(self) -> list[str]:
        super().stop()
        if self.cluster is None:
            return []
        self.left = self.cluster.stop(graceful=True)
        return self.left

    def describe(self) -> dict:
        timings = self.cluster.timings if self.cluster is not None else {}
        return {**super().describe(), "workdir": str(self.workdir / "kube"),
                "start_s": round(timings["start"], 1) if "start" in timings else None,
                "component_logs": str(self.workdir / "kube" / "logs")}


def built() -> bool:
    from loadtest.stack.kubernetes.sources import KUBE_CACHE

    return any(KUBE_CACHE.glob("*/bin/.stamp"))


__all__ = ["EmbeddedCluster", "MACHINE_WAIT_S", "Target", "UserCluster", "built"]
