"""Watching a Compose stack: Docker's container events for the project (a replica that
dies, with Docker's time and, when the kernel killed it for memory, why; the balancer
that dies). A stop the harness caused (``EventLog.expect``) is not a death."""

from __future__ import annotations

import time

from loadtest.contract import events as ev
from loadtest.stack.base import StackError
from loadtest.stack.docker.compose import file as cf


def read_events(stack) -> list[dict]:
    until = time.time()
    noticed = []
    try:
        seen = list(stack._client.events(
            since=int(stack._events_since), until=int(until) + 1, decode=True,
            filters={"type": "container", "event": ["die", "oom"],
                     "label": [f"com.docker.compose.project={stack.project}"]}))
    except Exception as exc:  # noqa: BLE001 - the engine's API; say it once
        raise StackError(f"cannot read Docker's events: {str(exc)[:120]}") from None
    for item in seen:
        t = item.get("timeNano", 0) / 1e9 or float(item.get("time", until))
        if t < stack._events_since:
            continue
        cid = item.get("id") or item.get("Actor", {}).get("ID", "")
        attrs = item.get("Actor", {}).get("Attributes", {})
        if (item.get("status") or item.get("Action")) == "oom":
            stack._oom.add(cid)  # its die follows: say why
            continue
        service = attrs.get("com.docker.compose.service")
        code = attrs.get("exitCode")
        if service == stack.service and not stack.events.expected(cid):
            stack.events.expect(cid)  # reported once
            name = stack._known.get(cid) or cid[:12]
            stack._routed.discard(name)
            if stack._runtime is not None and name in stack._runtime.servers:
                try:
                    stack._runtime.forget(name)
                except StackError:
                    pass  # HAProxy's own check takes it out
            noticed.append(stack._event(
                ev.REPLICA_DIED, hostname=name, returncode=code, noticed=until,
                **({"reason": "out of memory (its memory limit)"} if cid in stack._oom
                   else {})))
            noticed[-1]["t"] = t
        elif service == cf.BALANCER_SERVICE and not stack._balancer_reported \
                and not stack.events.expected("balancer", t):
            stack._balancer_reported = True
            noticed.append(stack._event(ev.BALANCER_DIED, balancer=stack.balancer,
                                       returncode=code))
            noticed[-1]["t"] = t
    stack._events_since = until - 1  # Docker's since/until are whole seconds: overlap
    return noticed
