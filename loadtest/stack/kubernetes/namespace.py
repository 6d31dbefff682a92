"""The run's namespace: created, filled with the applied copy, emptied into logs, deleted.

Everything the run puts into a cluster lives in one namespace named after the run
(``scalecheck-<run>-<4 hex>``, labelled as the harness's), so that the end removes
it all with one delete, on the user's cluster as on the embedded one. Objects are
created through the API's own discovery (any namespaced kind the cluster serves),
as ``kubectl create`` does.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path

from loadtest.stack.base import StackError
from loadtest.stack.kubernetes.rest import Kube, KubeError
from loadtest.stack.kubernetes.workload import label

MANAGED_BY = {"app.kubernetes.io/managed-by": "scalecheck"}
LOG_BYTES = 2 * 2**20  # of each container's log kept in the run's logs


def name_for(run: str) -> str:
    """A namespace name (DNS label, at most 63 characters) for a run directory's name."""
    base = re.sub(r"[^a-z0-9-]+", "-", run.lower()).strip("-")[:40].strip("-") or "run"
    return f"scalecheck-{base}-{secrets.token_hex(2)}"


class Namespace:
    def __init__(self, kube: Kube, name: str) -> None:
        self.kube = kube
        self.name = name
        self.created = False
        self._resources: dict[str, dict[str, tuple[str, bool]]] = {}

    def create(self, run: str, timeout: float = 60.0) -> None:
        self.kube.create("/api/v1/namespaces", {"metadata": {
            "name": self.name, "labels": {**MANAGED_BY, "scalecheck.run": _label_value(run)}}})
        self.created = True
        deadline = time.monotonic() + timeout
        # Pods are refused until the namespace's default ServiceAccount exists.
        while True:
            try:
                self.kube.get(f"/api/v1/namespaces/{self.name}/serviceaccounts/default")
                return
            except KubeError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise StackError(f"namespace {self.name} never got its default "
                                     f"ServiceAccount ({exc})") from None
            time.sleep(0.1)

    def apply(self, objects: list[dict]) -> None:
        """Create each object, in order; one line naming the first the API refuses."""
        for obj in objects:
            path = self.collection(obj)
            try:
                self.kube.create(path, obj)
            except KubeError as exc:
                raise StackError(f"the cluster refused {label(obj)}: "
                                 f"{str(exc).split(': ', 1)[-1]}") from None

    def collection(self, obj: dict) -> str:
        """The API path of the collection ``obj`` goes into (found by discovery)."""
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        resources = self._discover(api_version)
        if kind not in resources:
            raise StackError(f"{label(obj)}: the cluster serves no kind {kind} in "
                             f"{api_version}")
        plural, namespaced = resources[kind]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        return f"{base}/namespaces/{self.name}/{plural}" if namespaced else f"{base}/{plural}"

    def _discover(self, api_version: str) -> dict[str, tuple[str, bool]]:
        if api_version not in self._resources:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.kube.get(base)
            except KubeError as exc:
                raise StackError(f"the cluster does not serve {api_version} ({exc})") from None
            self._resources[api_version] = {
                r["kind"]: (r["name"], bool(r.get("namespaced")))
                for r in listing.get("resources", []) if "/" not in r["name"]}
        return self._resources[api_version]

    def save_logs(self, dest: Path) -> None:
        """Each container's log (and its previous one, after a restart) and the namespace's
        events, into ``dest/pods`` and ``dest/kube-events.json``."""
        pods_dir = Path(dest) / "pods"
        pods_dir.mkdir(parents=True, exist_ok=True)
        try:
            pods = self.kube.get(f"/api/v1/namespaces/{self.name}/pods").get("items", [])
        except KubeError:
            return
        for pod in pods:
            name = pod["metadata"]["name"]
            for status in pod.get("status", {}).get("containerStatuses") or []:
                container = status["name"]
                versions = [False] + ([True] if status.get("restartCount") else [])
                for previous in versions:
                    text = self._log(name, container, previous)
                    if text:
                        suffix = ".previous" if previous else ""
                        (pods_dir / f"{name}_{container}{suffix}.log").write_text(text)
        try:
            events = self.kube.get(f"/api/v1/namespaces/{self.name}/events").get("items", [])
            (Path(dest) / "kube-events.json").write_text(json.dumps(
                [{k: e.get(k) for k in ("type", "reason", "message", "involvedObject",
                                        "firstTimestamp", "lastTimestamp", "count")}
                 for e in events], indent=1))
        except KubeError:
            pass

    def _log(self, pod: str, container: str, previous: bool) -> str:
        path = f"/api/v1/namespaces/{self.name}/pods/{pod}/log"
        query = {"container": container, "limitBytes": str(LOG_BYTES), "timestamps": "true"}
        if previous:
            query["previous"] = "true"
        try:
            response = self.kube._call("GET", path, query, None, 10)
            data = response.read()
        except KubeError:
            return ""
        return data.decode(errors="replace") if response.status < 400 else ""

    def delete(self, timeout: float = 90.0) -> str | None:
        """Delete the namespace and wait until it is gone; a line saying what stayed, or
        None. Pods get one second (the run is over: nothing to drain)."""
        if not self.created:
            return None
        try:
            self.kube.request("DELETE", f"/api/v1/namespaces/{self.name}/pods",
                              {"gracePeriodSeconds": "1"})
            self.kube.delete(f"/api/v1/namespaces/{self.name}")
        except KubeError as exc:
            return f"namespace {self.name} could not be deleted: {exc}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.kube.get(f"/api/v1/namespaces/{self.name}")
            except KubeError as exc:
                if exc.status == 404:
                    self.created = False
                    return None
            time.sleep(0.25)
        return f"namespace {self.name} is still terminating after {timeout:.0f} s"


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "run"


__all__ = ["MANAGED_BY", "Namespace", "name_for"]
