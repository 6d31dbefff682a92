"""The team's manifests as they are on disk: a file, a folder of YAML, or a kustomization.

``--kube-manifests`` names what the team applies with ``kubectl apply -f`` (a file or
a folder: its ``*.yaml``, ``*.yml`` and ``*.json``, not its subfolders, in name
order) or with ``kubectl apply -k`` (a folder holding a ``kustomization.yaml``,
rendered by ``kubectl kustomize``, as overlays are). Nothing is written back: the
objects come out as plain dicts, and what the harness applies is a copy of them
(``applied``). Anything that does not read as Kubernetes objects is one line
naming the file and what is wrong.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import yaml

KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUFFIXES = (".yaml", ".yml", ".json")
#: Where the Kubernetes build keeps its kubectl (scripts/kube-build.sh), per version.
KUBE_CACHE = Path(os.environ.get("SCALECHECK_KUBE_CACHE")
                  or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                  / "scalecheck" / "kube")


class ManifestError(ValueError):
    """The manifests cannot be read or used; the message is one line."""


def read(path: Path) -> list[dict]:
    """Every object in ``path`` (file, folder, or kustomization), in order."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"--kube-manifests {path}: no such file or folder")
    if path.is_dir():
        if any((path / name).is_file() for name in KUSTOMIZATIONS):
            return _parse(kustomize(path), f"{path} (kustomize)")
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise ManifestError(f"--kube-manifests {path}: no .yaml, .yml or .json file in it")
        return [obj for f in files for obj in _parse(_text(f), str(f))]
    return _parse(_text(path), str(path))


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read ({exc})") from None


def _parse(text: str, where: str) -> list[dict]:
    """YAML documents (or one JSON document) as objects; ``List`` kinds unpacked."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{where} does not parse as YAML{at}: {problem}") from None
    out = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        items = doc.get("items") if isinstance(doc, dict) and \
            str(doc.get("kind", "")).endswith("List") else [doc]
        for obj in items or []:
            _check_object(obj, where, index)
            out.append(obj)
    if not out:
        raise ManifestError(f"{where} holds no Kubernetes object")
    return out


def _check_object(obj, where: str, index: int) -> None:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: document {index + 1} is not a Kubernetes object "
                            f"(a {type(obj).__name__})")
    missing = [k for k in ("apiVersion", "kind") if not obj.get(k)]
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) \
        else None
    if not name and "generateName" not in (obj.get("metadata") or {}):
        missing.append("metadata.name")
    if missing:
        raise ManifestError(f"{where}: document {index + 1} has no {', '.join(missing)}")


def kubectl() -> str:
    """A kubectl that can render a kustomization: the one the Kubernetes build made (the
    newest version here), else one on PATH."""
    built = sorted(glob.glob(str(KUBE_CACHE / "*" / "bin" / "kubectl")))
    if built:
        return built[-1]
    found = shutil.which("kubectl")
    if found:
        return found
    raise ManifestError("a kustomization needs kubectl to render it (none found: `make "
                        "kube-build` builds one, or install kubectl)")


def kustomize(folder: Path) -> str:
    try:
        proc = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise ManifestError(f"--kube-manifests {folder}: kustomize took over 120 s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}"
        if 'err="' in last:  # klog's structured line: the message is in err="..."
            last = last.split('err="', 1)[1].rstrip('"')
        raise ManifestError(f"{folder}: kustomize failed: {last[:300]}")
    return proc.stdout


__all__ = ["ManifestError", "kubectl", "kustomize", "read"]
