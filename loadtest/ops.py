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

The operations (``f``) the checkers know, each key judged on its own:

- registers: ``write`` (value), ``read`` (seen), ``cas`` (value: [expected, new]);
- sets or append-only lists read as sets: ``add`` (value: one element), ``read-all``
  (seen: every element);
- counters: ``incr`` (value: an integer, added), ``read-counter`` (seen: the count, None
  for 0);
- ordered lists: ``append`` (value: one element), ``read-list`` (seen: the list in order);
- sessions, per user: ``login`` (value: the user), ``session`` (seen: the user the app
  says is logged in, or None).

**Outcomes.** Each operation's outcome is read from HTTP, as the status means it: a 2xx
(or 3xx) answer took effect (``ok``); a 4xx did not (``fail``: the app refused it, e.g. a
409 Conflict); a 5xx, a reset or a timeout may or may not have (``unknown``, Jepsen's
``:info``); a request the balancer answered itself without reaching a replica did not.
A ``cas`` answered 409 or 412 is a *compare failed*: it saw another value and changed
nothing. When the app means something else by its status (a 404 for a key never
written, a 4xx that still wrote), say so inside ``catch_response``::

    saw(resp, None, outcome="ok")        # a 404 read: the key is absent, a definite answer
    outcome(resp, "unknown")             # a 422 that may still have written

The words are ``ok``, ``fail``, ``unknown``, and for ``cas`` also ``swapped`` (= ok) and
``compare-failed``.

**Clients.** Each Locust user is one client (a Jepsen *process*: its requests are
sequential), with nothing to declare. A user class whose ``context()`` returns
``{"user": id}`` groups requests by that id instead.

The collector records ``op``, ``key``, ``value``, ``seen`` (JSON) and a declared
``outcome`` beside the request. A request that names no operation costs nothing more.
"""

from __future__ import annotations

from typing import Any

FS = ("write", "read", "cas", "add", "read-all", "incr", "read-counter", "append",
      "read-list", "login", "session")
#: The outcomes a scenario may declare; ``swapped`` and ``compare-failed`` are a cas's.
OUTCOMES = ("ok", "fail", "unknown", "swapped", "compare-failed")
CAS_OUTCOMES = ("swapped", "compare-failed")


def operation(f: str, key: str | None = None, value: Any = None) -> dict:
    """The ``context`` of a request that acts on the app's state. Refuses, in one line, an
    unknown operation, a ``cas`` whose value is not ``[expected, new]`` and an ``incr``
    whose value is not an integer: a mistake here would be judged as the app's."""
    if f not in FS:
        raise ValueError(f"unknown operation {f!r}: one of {', '.join(FS)}")
    if f == "cas" and not (isinstance(value, list | tuple) and len(value) == 2):
        raise ValueError(f"cas takes [expected, new] as its value, not {value!r}")
    if f == "incr" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"incr takes an integer to add, not {value!r}")
    return {"op": f, "key": None if key is None else str(key),
            "value": list(value) if f == "cas" else value}


def saw(response, seen: Any, *, outcome: str | None = None) -> None:
    """Inside ``catch_response``: what the operation saw (recorded when the block ends),
    and, if given, its outcome (see ``outcome``)."""
    _context(response, "saw")["seen"] = seen
    if outcome is not None:
        _declare(response, outcome, "saw")


def outcome(response, what: str) -> None:
    """Inside ``catch_response``: the operation's outcome as the app means it, in place of
    the one its HTTP status gives: ``ok``, ``fail`` (it surely had no effect),
    ``unknown`` (it may have had one), and for a ``cas`` ``swapped`` or
    ``compare-failed``."""
    _declare(response, what, "outcome")


def _declare(response, what: str, caller: str) -> None:
    context = _context(response, caller)
    if what not in OUTCOMES:
        raise ValueError(f"unknown outcome {what!r}: one of {', '.join(OUTCOMES)}")
    if what in CAS_OUTCOMES and context.get("op") != "cas":
        raise ValueError(f"outcome {what!r} is a cas's; this operation is "
                         f"{context.get('op')!r}")
    context["outcome"] = what


def _context(response, caller: str) -> dict:
    meta = getattr(response, "request_meta", None)
    if meta is None:
        raise TypeError(f"{caller}() needs the response of a request made with "
                        "catch_response=True")
    return meta["context"]
