"""Compose + Traefik: --scale asked to routed (mostly Docker's health check); no target."""

from __future__ import annotations

import statistics

from benchmarks.common import free_port, p95, scale_up_times


def bench_compose(trials: int = 5) -> None:
    """``trials`` scale-ups 1 -> 2 of the Compose stack; skipped if it cannot start."""
    from loadtest.stack import StackError
    from loadtest.stack.docker.compose.stack import ComposeStack

    print(f"== Compose with Traefik (Docker provider): --scale asked -> routed, {trials} trials")
    stack = ComposeStack(port=free_port(), balancer="traefik", api_port=free_port())
    try:
        stack.up(1)
    except StackError as exc:
        print(f"  skipped: {exc} (make docker-images builds the images; dockerd must run)")
        stack.down()
        return
    routed = scale_up_times(stack, trials)
    print(f"  median {statistics.median(routed):.2f}s, p95 {p95(routed):.2f}s "
          "(most of it is Docker's health check: start period and interval)")
