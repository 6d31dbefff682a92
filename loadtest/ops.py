"""Say what a request did to the app's state, so the harness can check it Jepsen-style.

A scenario names the operation when it sends the request, and, for a read, what it saw
once the answer is in::

    from loadtest.ops import operation, saw

    # a write: the value is known before the request goes
    self.client.put(f"/kv/{key}", json=value, context=operation("write", key, value))

    # a read: what it saw is known only from the answer
    with self.client.get(f"/kv/{key}", context=operation("read", key),
                         catch_response=True) as resp:
        saw(resp, resp.json()["value"] if resp.status_code == 200 else None)

The operations (``f``) the checkers know:

- registers, per key: ``write`` (value), ``read`` (seen), ``cas`` (value: [old, new]);
- sets or append-only lists, per key: ``add`` (value: one element), ``read-all``
  (seen: every element);
- sessions, per user: ``login`` (value: the user), ``session`` (seen: the user the app
  says is logged in, or None).

The collector records ``op``, ``key``, ``value`` and ``seen`` (JSON) beside the request;
its outcome follows the counter's rules: a definite answer is ``ok``, a request that
surely never reached the app (refused, the balancer's own 503) ``fail``, anything else
(a timeout, a reset, a 5xx) ``unknown``: it may or may not have taken effect. A request
that names no operation costs nothing more.
"""

from __future__ import annotations

from typing import Any

FS = ("write", "read", "cas", "add", "read-all", "login", "session")


def operation(f: str, key: str | None = None, value: Any = None) -> dict:
    """The ``context`` of a request that acts on the app's state."""
    if f not in FS:
        raise ValueError(f"unknown operation {f!r}: one of {', '.join(FS)}")
    return {"op": f, "key": None if key is None else str(key), "value": value}


def saw(response, seen: Any) -> None:
    """Inside ``catch_response``: what the operation saw (recorded when the block ends)."""
    meta = getattr(response, "request_meta", None)
    if meta is None:
        raise TypeError("saw() needs the response of a request made with catch_response=True")
    meta["context"]["seen"] = seen
