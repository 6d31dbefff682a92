"""Stack backends: the system under test behind one load-balancer URL.

``make_stack(name, ...)`` is the one place that knows which classes exist.
"""

from __future__ import annotations

from loadtest.stack.base import Replica, ScaleResult, Stack, StackError

BACKENDS = ("local", "compose", "external")


def make_stack(name: str, *, port: int = 4000, url: str | None = None, **options) -> Stack:
    if name == "local":
        from loadtest.stack.local import LocalStack

        return LocalStack(port=port, **options)
    if name == "external":
        from loadtest.stack.external import ExternalStack

        if not url:
            raise StackError("--stack external needs the app's URL: pass -H http://HOST:PORT")
        return ExternalStack(url)
    if name == "compose":
        from loadtest.stack.compose import ComposeStack

        return ComposeStack(port=port, **options)
    raise StackError(f"unknown stack backend {name!r}: choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Replica", "ScaleResult", "Stack", "StackError", "make_stack"]
