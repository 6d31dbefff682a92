"""The real HPA beside the simulation, on one load profile (issue 24).

Three runs of the hello app with CPU-bound requests (``CPU_MS``: each request burns that
much CPU; the pods request 100m CPU, as in its manifest), one open-model profile (rise,
plateau, fall), one HPA (CPU at 60 % of the request, 1 to 4 replicas, a 30 s scale-down
window):

1. ``real``: the cluster's own HPA drives the Deployment (``--autoscale cluster``);
2. ``sim-k8s``: scalecheck's HPA drives the same kind of cluster's Deployment (``--stack
   kubernetes --hpa-manifest`` on the same file; the HPA held back), its CPU read from the
   pods' processes;
3. ``sim-embedded``: scalecheck's HPA on the embedded stack, ``--hpa-manifest`` the same.

Then ``analyze.py --compare`` on the three: each run's replica timeline against the real
one (the largest difference at any second, outside 30 s after each real change, replica-
seconds, changes) and ``compare_replicas.png``. Each Kubernetes run starts its own
throwaway cluster (the harness's default; the pods' CPU is read through its runtime).
Needs root, Go and the Debian packages of ``make kube-build``; skipped with a line if not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.common import free_port, scratch_dir

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "0s:5,20s:40,100s:40,110s:5,200s:5"
CPU_MS = "5"
HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
       "metadata": {"name": "hello"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": "hello"},
                "minReplicas": 1, "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization",
                                              "averageUtilization": 60}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}}}
#: The simulation reads the same file (--hpa-manifest: its first HPA); the period is the
#: controller's sync period (Kubernetes' default 15 s), the request the pods'.
SIMULATED = ["--autoscale-period", "15s", "--replica-cpu-request", "0.1"]


def _manifests(tmp: Path) -> Path:
    """The hello app's manifests with CPU_MS in its pods, and the HPA."""
    from loadtest.stack.kubernetes.backend import DEFAULT_MANIFESTS

    docs = [d for d in yaml.safe_load_all(DEFAULT_MANIFESTS.read_text()) if d]
    for doc in docs:
        if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "hello":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container.setdefault("env", []).append({"name": "CPU_MS", "value": CPU_MS})
    path = tmp / "hello-hpa.yaml"
    path.write_text(yaml.safe_dump_all([*docs, HPA], sort_keys=False))
    return path


def _run(name: str, args: list[str], tmp: Path) -> Path | None:
    run_dir = tmp / name
    cmd = [str(Path(sys.executable).parent / "locust"), "-f", "loadtest/hello.py",
           "--headless", "--only-summary", "--load-model", "open", "--load-profile", PROFILE,
           "--run-dir", str(run_dir), "--stack-port", str(free_port()),
           "--api-port", str(free_port()), *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800,
                          env={**os.environ, "CPU_MS": CPU_MS})
    took = time.monotonic() - started
    if proc.returncode not in (0, 1) or not (run_dir / "run.json").is_file():
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {name}: skipped: exit {proc.returncode} after {took:.0f} s: {last}")
        return None
    run = json.loads((run_dir / "run.json").read_text())
    status = run.get("status")
    print(f"  {name}: {took:.0f} s, {status}" + (f": {run.get('error')}" if run.get("error")
                                                  else ""))
    return run_dir if status == "completed" else None


def bench_hpa() -> None:
    print(f"== the real HPA beside the simulation: open load {PROFILE} (req/s), CPU_MS="
          f"{CPU_MS}, CPU 60 % of 100m, 1-4 replicas, scale-down window 30 s")
    with scratch_dir() as tmp:
        manifests = _manifests(tmp)
        kube = ["--stack", "kubernetes", "--kube-manifests", str(manifests),
                "--kube-deployment", "hello", "--counter-read", "redis:redis:counter"]
        simulated = [*SIMULATED, "--hpa-manifest", str(manifests)]
        runs = [("real", _run("real", [*kube, "--autoscale", "cluster"], tmp)),
                ("sim-k8s", _run("sim-k8s", [*kube, *simulated], tmp)),
                ("sim-embedded", _run("sim-embedded", simulated, tmp))]
        done = [(name, path) for name, path in runs if path is not None]
        if len(done) < 2:
            print("  not enough runs to compare")
            return
        for _, path in done:
            subprocess.run([sys.executable, "analyze.py", str(path), "--no-report"],
                           capture_output=True, cwd=ROOT, timeout=600)
        out = ROOT / "reports" / "bench-hpa"
        compare = subprocess.run([sys.executable, "analyze.py", "--compare",
                                  *(str(p) for _, p in done), "--out", str(out)],
                                 capture_output=True, text=True, cwd=ROOT, timeout=600)
        for line in compare.stdout.strip().splitlines():
            print(f"  {line}")
        for name, path in done:
            scaling = json.loads((path / "summary.json").read_text()).get("autoscaling") or {}
            changes = ", ".join(f"{t:.0f}s->{lv}" for t, lv in scaling.get("changes_at") or [])
            print(f"  {name:13} replica-s {scaling.get('replica_seconds')}, time to scale "
                  f"{scaling.get('max_time_to_scale_s')} s, decisions "
                  f"{scaling.get('decisions')}, changes: {changes}")
