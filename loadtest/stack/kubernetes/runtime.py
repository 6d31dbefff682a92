"""The embedded cluster's container runtime, reached through its containerd socket.

The API has no verb for "SIGKILL this container" (an exec'd ``kill -9 1`` is
ignored: PID 1 of a namespace gets no signal it has no handler for) nor for
"freeze it": the faults act on containerd's tasks directly, as ``crictl`` would,
with ``ctr`` in containerd's ``k8s.io`` namespace (the kubelet's). The same socket
takes the images Docker built (``docker save`` -> import), once per image version:
containerd names an imported image also by its config digest, which is Docker's
image id, so an image already there is not loaded again.

Only a cluster on this machine has such a socket: the embedded one (started by the
harness, or found from a kubeconfig that points at it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from loadtest.stack.base import StackError
from loadtest.stack.kubernetes.layout import RUN_DIR, Layout

RECORD = RUN_DIR / "active.json"


def normalize(image: str) -> str:
    """The name the kubelet asks containerd for: ``redis`` -> ``docker.io/library/redis:latest``."""
    name, digest = (image.split("@", 1) + [""])[:2]
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if digest:
        return f"{name}@{digest}"
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def docker_image_id(image: str) -> str | None:
    """Docker's id of a local image (its config digest), or None where Docker lacks it."""
    try:
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", image],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Runtime:
    """``ctr`` on one containerd socket, in the kubelet's namespace."""

    def __init__(self, socket: Path) -> None:
        self.socket = Path(socket)

    def ctr(self, *args: str, timeout: float = 60, stdin=None) -> str:
        try:
            proc = subprocess.run(["ctr", "-n", "k8s.io", "-a", str(self.socket), *args],
                                  capture_output=True, text=True, timeout=timeout, stdin=stdin)
        except subprocess.TimeoutExpired:
            raise StackError(f"ctr {' '.join(args[:2])} took over {timeout:.0f} s") from None
        except OSError as exc:
            raise StackError(f"ctr cannot run: {exc}") from None
        if proc.returncode != 0:
            raise StackError(f"ctr {' '.join(args[:2])} failed: "
                             f"{(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}")
        return proc.stdout

    # -- images ------------------------------------------------------------------------

    def image_digests(self) -> dict[str, str]:
        """ref -> manifest digest of every image the cluster's containerd holds."""
        out = {}
        for line in self.ctr("images", "ls").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                out[fields[0]] = fields[2]
        return out

    def has_image(self, image: str) -> bool:
        return normalize(image) in self.image_digests()

    def holds_docker_image(self, image: str, docker_id: str) -> bool:
        """The cluster holds this very version of Docker's image (same content, same name)."""
        digests = self.image_digests()
        named = digests.get(normalize(image))
        return named is not None and digests.get(docker_id) == named

    def load_docker_image(self, image: str, timeout: float = 600) -> bool:
        """Copy a Docker image into the cluster unless this version is there; True if
        copied."""
        docker_id = docker_image_id(image)
        if docker_id is None:
            raise StackError(f"image {image} is not present locally (docker image inspect "
                             "finds nothing)")
        if self.holds_docker_image(image, docker_id):
            return False
        saver = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        try:
            self.ctr("images", "import", "-", timeout=timeout, stdin=saver.stdout)
        finally:
            if saver.stdout is not None:
                saver.stdout.close()
            code = saver.wait(timeout=60)
        if code != 0:
            raise StackError(f"docker save {image} failed (exit {code})")
        return True

    # -- tasks (a container's processes) -------------------------------------------------

    def kill(self, container_id: str, signal: int) -> None:
        self.ctr("tasks", "kill", "--signal", str(int(signal)), container_id)

    def pause(self, container_id: str) -> None:
        self.ctr("tasks", "pause", container_id)

    def resume(self, container_id: str) -> None:
        self.ctr("tasks", "resume", container_id)

    def task_pids(self) -> dict[str, int]:
        """container id -> the pid of its first process (on this machine)."""
        out = {}
        for line in self.ctr("tasks", "ls").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                out[fields[0]] = int(fields[1])
        return out

    def paused(self) -> list[str]:
        return [line.split()[0] for line in self.ctr("tasks", "ls").splitlines()[1:]
                if line.split()[2:3] == ["PAUSED"]]


def container_id(status_id: str | None) -> str:
    """``containerd://abc…`` (a pod status's containerID) -> ``abc…``."""
    return (status_id or "").split("://", 1)[-1]


def embedded_runtime(server: str) -> Runtime | None:
    """The runtime of the embedded cluster on this machine if ``server`` is its apiserver
    (a kubeconfig may point at it: tests, or a cluster started by hand), else None."""
    try:
        record = json.loads(RECORD.read_text())
        layout = Layout(Path(record["workdir"]))
        config = yaml.safe_load(layout.admin_kubeconfig.read_text())
        servers = {c["cluster"]["server"].rstrip("/") for c in config["clusters"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None
    if server.rstrip("/") not in servers:
        return None
    return Runtime(layout.containerd_socket) if layout.containerd_socket.exists() else None


__all__ = ["Runtime", "container_id", "docker_answers", "docker_image_id",
           "embedded_runtime", "normalize"]
