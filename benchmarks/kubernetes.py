"""Kubernetes: scale asked -> the new pod routed, beside the embedded stack and Compose.

In one run, the same question of three backends: ``scale(2)`` from 1 replica, asked to
ready (the balancer routes to exactly the new set: for Kubernetes, the pod Ready, in
the EndpointSlice and taken in by the harness's Traefik), median and p95 of 10, then
back to 1. Kubernetes runs on the embedded cluster (its start time is printed, and the
first build's when this run made it); Compose is skipped where no Docker engine
answers. No target: the figures say where the time goes (a pod's sandbox and its
readiness probe, Docker's health check), not whether it is fast enough.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from benchmarks.common import docker_answers, free_port, p95, scale_up_times, scratch_dir

TRIALS = 10


def _routed(make: Callable[[], object], trials: int) -> tuple[list[float], object]:
    """``trials`` scale-ups 1 -> 2 (and back): seconds from asked to ready."""
    stack = make()
    try:
        stack.up(1)
    except BaseException:
        stack.down()
        raise
    return scale_up_times(stack, trials), stack


def _say(name: str, routed: list[float], note: str = "") -> None:
    print(f"  {name:11} median {statistics.median(routed):.2f}s, p95 {p95(routed):.2f}s, "
          f"max {max(routed):.2f}s{note}")


def bench_kubernetes(trials: int = TRIALS) -> None:
    from loadtest.stack import StackError
    from loadtest.stack.docker.compose.stack import ComposeStack
    from loadtest.stack.embedded.stack import LocalStack
    from loadtest.stack.kubernetes.backend import KubernetesStack
    from loadtest.stack.kubernetes.target import built

    print(f"== scale(2) asked -> the new replica routed, {trials} trials each, Traefik in "
          "front: Kubernetes (embedded cluster) beside the embedded stack and Compose")
    built_before = built()
    with scratch_dir() as tmp:
        started = time.monotonic()
        try:
            kube, stack = _routed(lambda: KubernetesStack(
                port=free_port(), api_port=free_port(), workdir=tmp / "k8s",
                log_dir=tmp / "k8s-logs", run_name="bench"), trials)
        except StackError as exc:
            print(f"  kubernetes: skipped: {exc}")
            kube, stack = None, None
        if stack is not None:
            timings = stack.target.cluster.timings
            if not built_before:
                print(f"  the first build of Kubernetes took {timings['build']:.0f} s")
            print(f"  cluster start {timings['start'] - timings['build']:.1f} s, stop "
                  f"{timings.get('stop', 0):.1f} s; the whole section "
                  f"{time.monotonic() - started:.0f} s")
            _say("kubernetes", kube, "  (pod sandbox, container start, readiness probe "
                 "every 1 s, EndpointSlice, Traefik's file provider)")
    local, _ = _routed(lambda: LocalStack(port=free_port(), api_port=free_port()), trials)
    _say("embedded", local, "  (a process, its health path, Traefik's file provider)")
    if not docker_answers():
        print("  compose:    skipped: no Docker engine answers (start dockerd; make "
              "docker-images)")
        return
    try:
        compose, _ = _routed(lambda: ComposeStack(port=free_port(), api_port=free_port()),
                             trials)
    except StackError as exc:
        print(f"  compose:    skipped: {exc}")
        return
    _say("compose", compose, "  (a container, Docker's health check, Traefik's Docker "
         "provider)")
