"""Stack backends: the system under test behind one load-balancer URL.

``REGISTRY`` is the one place that lists the backends: adding one is a module
with a ``Stack`` subclass plus a line here. Each class declares its own
command-line options (``add_arguments``) and how it is built from them
(``from_settings``); nothing else in the harness knows which backend it holds.
"""

from __future__ import annotations

import importlib

from loadtest.stack.base import (
    BalancerRow,
    Replica,
    ScaleResult,
    Stack,
    StackError,
    StackSettings,
    Unsupported,
)

REGISTRY: dict[str, str] = {
    "local": "loadtest.stack.embedded.stack:LocalStack",
    "compose": "loadtest.stack.docker.compose.stack:ComposeStack",
    "swarm": "loadtest.stack.docker.swarm.stack:SwarmStack",
    "kubernetes": "loadtest.stack.kubernetes.backend:KubernetesStack",
    "external": "loadtest.stack.external:ExternalStack",
}
BACKENDS = tuple(REGISTRY)


def backend_class(name: str) -> type[Stack]:
    if name not in REGISTRY:
        raise StackError(f"unknown stack backend {name!r}: choose one of {', '.join(BACKENDS)}")
    module, _, attr = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def make_stack(name: str, settings: StackSettings | None = None, **overrides) -> Stack:
    """Build backend ``name`` from settings (``overrides`` set fields of StackSettings)."""
    settings = settings or StackSettings()
    for key, value in overrides.items():
        setattr(settings, key, value)
    return backend_class(name).from_settings(settings)


__all__ = ["BACKENDS", "REGISTRY", "BalancerRow", "Replica", "ScaleResult", "Stack",
           "StackError", "StackSettings", "Unsupported", "backend_class", "make_stack"]
