"""The harness's own balancers on this machine (Traefik, HAProxy), fed by the backends,
and one reading of a balancer's view."""

from __future__ import annotations

from loadtest.stack.balancers.base import BalancerPaths, LocalBalancer
from loadtest.stack.balancers.haproxy import HAProxyBalancer
from loadtest.stack.balancers.traefik import TraefikBalancer
from loadtest.stack.base import StackError


def make_balancer(name: str, paths: BalancerPaths) -> LocalBalancer:
    """The balancer named by ``--balancer`` (imported only when chosen)."""
    if name == "haproxy":
        return HAProxyBalancer(paths)
    if name == "traefik":
        return TraefikBalancer(paths)
    raise StackError(f"unknown balancer {name!r}: choose traefik or haproxy")


__all__ = ["make_balancer"]
