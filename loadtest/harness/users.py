"""Locust users that count every attempt they put on the wire.

geventhttpclient, under Locust's ``FastHttpUser``, sends a request again by
itself when a kept-alive connection turns out to be closed after the request
was written (it may have reached the app, and incremented the counter, before
the connection went). Locust then reports one request; the first attempt
leaves no trace. ``ScalecheckHttpUser`` is a ``FastHttpUser`` whose clients
count the sockets each request took: the collector records
``attempts = 1 + hidden resends`` for every request, and the consistency
checks treat each hidden attempt as an unknown outcome.

Each request also carries ``X-Scalecheck-Id``, a per-run unique id the
collector records: a balancer that logs it (Traefik's access log) then says
which server answered each request, even when the app does not name itself.

Every request is accounted for, hung or not. Requests time out after the harness's
``--request-timeout`` (an answer that never comes is a request with no answer, status 0,
not a user stuck for the rest of the run), and a request still in flight when the run
stops its users is recorded then, with how long it had waited, as ``StoppedInFlight``:
Locust itself fires no request event for a user it kills, so it would otherwise vanish
from the records and from Locust's own counts alike.

Users of plain ``FastHttpUser`` still work: their records have no attempt
count and no request id (null), and the report says so.

Which client sent a request: each Locust user runs in a greenlet of its own and sends
its requests one after another, a *process* in Jepsen's sense. ``client_number`` names
that greenlet, so every user is a client of its own without declaring anything (a
scenario's ``context()`` returning ``{"user": id}`` groups requests otherwise).
"""

from __future__ import annotations

import itertools
import os
import time
import weakref
from typing import Any

from gevent import GreenletExit, getcurrent
from geventhttpclient.client import HTTPClient, HTTPClientPool
from geventhttpclient.url import URL
from locust.contrib.fasthttp import FastHttpUser

from loadtest.contract.events import STOP_GRACE_S
from loadtest.contract.wire import REQUEST_ID_HEADER

#: greenlet -> [hidden resends, request id] of the request it is making, until the
#: collector takes them.
_PENDING: dict[Any, list] = {}
_PREFIX = f"{os.getpid():x}-{os.urandom(3).hex()}-"
_SEQUENCE = itertools.count(1)
_CLIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # greenlet -> its number
_CLIENT_NUMBERS = itertools.count(1)


def client_number(greenlet=None) -> int:
    """The number of ``greenlet`` (the one running now by default): 1, 2, ... in this
    process, in the order the users started (``ScalecheckHttpUser``), else of their first
    request. One Locust user's requests share it, and no other user's do."""
    me = getcurrent() if greenlet is None else greenlet
    number = _CLIENTS.get(me)
    if number is None:
        number = _CLIENTS[me] = next(_CLIENT_NUMBERS)
    return number


def take_request_facts() -> tuple[int | None, str | None]:
    """For the collector, in the user's greenlet: (hidden resends, request id) of the
    request just reported; (None, None) for a user that does not count them."""
    facts = _PENDING.pop(getcurrent(), None)
    return (None, None) if facts is None else (facts[0], facts[1])


def take_hidden_attempts() -> int | None:
    """The hidden resends of the request just reported (None: not counted)."""
    return take_request_facts()[0]


class _CountingPool:
    """Stands in front of a client's connection pool and counts the sockets handed out."""

    def __init__(self, pool) -> None:
        self._pool = pool
        self.taken = 0

    def get_socket(self):
        sock = self._pool.get_socket()
        self.taken += 1
        return sock

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


class CountingHTTPClient(HTTPClient):
    """An HTTPClient that notes, per request, how many sockets beyond the first it took:
    each is an attempt the server may have seen and the caller never heard of."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._connection_pool = _CountingPool(self._connection_pool)

    def request(self, method, request_uri, body=b"", headers=None):
        pool = self._connection_pool
        before = pool.taken
        me = getcurrent()
        facts = _PENDING.get(me)
        if facts is None:
            facts = _PENDING[me] = [0, f"{_PREFIX}{next(_SEQUENCE):x}"]
        # A copy of the caller's headers, by their own copy(): geventhttpclient's Headers
        # is a dict subclass whose raw storage is not name -> value, so {**headers}
        # would send every header's name as its value (seen with geventhttpclient 2.6).
        headers = headers.copy() if headers is not None else {}
        headers[REQUEST_ID_HEADER] = facts[1]
        try:
            return super().request(method, request_uri, body=body, headers=headers)
        finally:
            # A redirect is a request of its own: each adds only its own resends.
            facts[0] += max(0, pool.taken - before - 1)


class CountingClientPool(HTTPClientPool):
    """One counting client per host, as geventhttpclient's pool has one client per host."""

    def get_client(self, url) -> HTTPClient:
        if not isinstance(url, URL):
            url = URL(url)
        key = url.host, url.port
        client = self.clients.get(key)
        if client is None:
            client = self.clients[key] = CountingHTTPClient.from_url(url, **self.client_args)
        return client


class StoppedInFlight(Exception):
    """The run stopped this request's user before an answer came."""


class CutShortAtStop(StoppedInFlight):
    """Stopped within the end's grace (``STOP_GRACE_S``) of being sent: the stop cut it
    short; nothing says the app would not have answered. Recorded (its outcome is
    unknown), and not a failure that makes Locust exit 1 (``cut_short_only``)."""


def cut_short_only(errors) -> int:
    """How many failures Locust counted, if every one is a request the stop cut short
    (0 otherwise): then the run's exit code is not Locust's 'there were failures'."""
    entries = list(errors)
    # An exception here, its repr as a string once a worker's report reached the master.
    texts = [e.error if isinstance(e.error, str) else repr(e.error) for e in entries]
    if not entries or not all(t.startswith(f"{CutShortAtStop.__name__}(") for t in texts):
        return 0
    return sum(e.occurrences for e in entries)


def harness_request_timeout(environment) -> float | None:
    """The run's request timeout, as the harness validated it (None outside a run)."""
    options = getattr(getattr(environment, "scalecheck", None), "options", None)
    return getattr(options, "request_timeout", None)


class ScalecheckHttpUser(FastHttpUser):
    """``FastHttpUser`` that counts hidden resends, times requests out and records those
    its stop cut short (see the module's docstring). Subclass it as you would
    ``FastHttpUser``."""

    abstract = True

    def start(self, group):
        """Locust's start, the user's greenlet numbered as a client now: in the order
        users start, as a scenario numbers its users in ``on_start``."""
        greenlet = super().start(group)
        client_number(greenlet)
        return greenlet

    def __init__(self, environment) -> None:
        timeout = harness_request_timeout(environment)
        if timeout:  # read by FastHttpUser.__init__ when it makes the client
            self.network_timeout = timeout
            self.connection_timeout = min(self.connection_timeout, timeout)
        super().__init__(environment)
        agent = self.client.client
        if self.client_pool is None:  # a pool of this user's own: count in it
            old = agent.clientpool
            agent.clientpool = CountingClientPool(**old.client_args)
            old.close()
        self.client.request = self._accounted(self.client.request)

    def _accounted(self, request):
        """``request`` that, when the user is stopped while waiting, fires the request
        event for it (an unknown outcome: it may have reached the app) before going."""
        events = self.environment.events.request

        def accounted(method, url, name=None, *args, context=None, **kwargs):
            started = time.time()
            try:
                return request(method, url, name, *args, context=context or {}, **kwargs)
            except GreenletExit:
                waited = time.time() - started
                events.fire(request_type=method, name=name or url,
                            response_time=waited * 1000, response_length=0, response=None,
                            context={**self.context(), **(context or {})},
                            exception=(CutShortAtStop if waited < STOP_GRACE_S
                                       else StoppedInFlight)(
                                f"no answer {waited:.1f} s after it was sent, when the run "
                                "stopped its users"),
                            start_time=started, url=url)
                raise

        return accounted
