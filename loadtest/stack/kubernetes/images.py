"""Container images without a registry or Docker: OCI archives made here.

No registry is reachable from these machines, so the sandbox (pause) image and
our test image are written by hand: one layer holding one static program, as an
OCI image layout in a tar, which ``ctr images import`` loads into the cluster's
containerd. Names carry a registry-like domain (``scalecheck.local/...``) so
that the kubelet does not rewrite them to ``docker.io/library/...``, and a tag
other than ``latest`` so that its default pull policy (IfNotPresent) never
tries to pull. Images that Docker built reach the cluster by ``docker save``.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

PAUSE_IMAGE = "scalecheck.local/pause:1"
HELLO_IMAGE = "scalecheck.local/hello:1"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _layer(files: dict[str, Path]) -> bytes:
    """An uncompressed tar of ``files`` (path in image -> file on the host), owned by root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for inside, host in sorted(files.items()):
            data = host.read_bytes()
            info = tarfile.TarInfo(inside.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _add_json(tar: tarfile.TarFile, name: str, value: dict) -> None:
    data = json.dumps(value).encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_oci_archive(path: Path, name: str, files: dict[str, Path],
                      entrypoint: list[str], env: list[str] | None = None) -> Path:
    """Write image ``name`` (one layer of ``files``) as an OCI archive at ``path``.

    The same inputs give the same bytes (fixed mtimes, sorted entries), so the
    image's digest only changes when a program does."""
    layer = _layer(files)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": env or ["PATH=/"], "WorkingDir": "/"},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        layer_desc = _blob(tar, layer, _OCI_LAYER)
        config_desc = _blob(tar, json.dumps(config).encode(), _OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": _OCI_MANIFEST,
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = _blob(tar, json.dumps(manifest).encode(), _OCI_MANIFEST)
        manifest_desc["annotations"] = {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
        }
        manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
        _add_json(tar, "oci-layout", {"imageLayoutVersion": "1.0.0"})
        _add_json(tar, "index.json", {"schemaVersion": 2, "manifests": [manifest_desc]})
    return path


def import_archive(archive: Path, socket: Path, timeout: float = 300) -> None:
    """Load an OCI or ``docker save`` archive into the cluster's containerd."""
    _ctr(socket, ["images", "import", str(archive)], timeout)


def import_stream(source: subprocess.Popen, socket: Path, timeout: float = 600) -> None:
    """Load an archive read from another process's stdout (``docker save``)."""
    result = subprocess.run(["ctr", "-n", "k8s.io", "-a", str(socket), "images", "import", "-"],
                            stdin=source.stdout, capture_output=True, text=True, timeout=timeout)
    if source.stdout is not None:
        source.stdout.close()
    source_rc = source.wait(timeout=timeout)
    if source_rc != 0 or result.returncode != 0:
        raise RuntimeError(f"image import failed: {result.stderr.strip()[-500:]}")


def load_docker_image(image: str, socket: Path, timeout: float = 600) -> None:
    """Copy an image that Docker has (e.g. scalecheck/hello:latest) into the cluster.

    Docker keeps its own image store; the kubelet only sees containerd's
    ``k8s.io`` namespace. The image keeps its normalised name there
    (``docker.io/scalecheck/hello:latest``): refer to it with
    ``imagePullPolicy: Never`` (or IfNotPresent and a tag other than latest)."""
    saver = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
    import_stream(saver, socket, timeout)


def image_names(socket: Path) -> set[str]:
    """Names of the images the cluster's containerd holds."""
    out = _ctr(socket, ["images", "list", "-q"], 60)
    return {line.strip() for line in out.splitlines() if line.strip()}


def _ctr(socket: Path, args: list[str], timeout: float) -> str:
    result = subprocess.run(["ctr", "-n", "k8s.io", "-a", str(socket), *args],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"ctr {args[0]} {args[1]} failed: {result.stderr.strip()[-500:]}")
    return result.stdout
