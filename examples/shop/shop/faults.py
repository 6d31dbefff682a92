"""The faulty variant: exactly one replica of those running misbehaves.

``FAULT=errors``: that replica answers 500 to a share of its requests
(``FAULT_ERROR_RATE``, 0.2: every fifth one, evenly spread). ``FAULT=slow``:
each of its responses takes ``FAULT_SLOW_FACTOR`` (10) times as long as the
request took to handle. ``/healthz`` is spared, so the balancer keeps sending
traffic to the faulty replica: the harness must find it in the answers.

Which replica is faulty is settled in Redis, not by hostname, so it holds the
same for processes on one machine and for containers: every replica runs a
*lease* on the key ``shop:faulty``. Once a second each one either renews the
lease (if it holds it) or takes it (if no one does); the holder is the faulty
one. The lease lasts three seconds, so when the faulty replica stops (it gives
the lease back) or dies (the lease runs out), another one takes over within a
few seconds, and there is again exactly one. A replica that cannot renew stops
being faulty when its lease would have run out, before anyone else can take it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("shop.faults")

LEASE_KEY = "shop:faulty"
LEASE_MS = 3000
RENEW_EVERY_S = 1.0

# Take the lease if it is free, renew it if it is ours; 1 if we hold it after.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Give the lease back only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class FaultLease:
    """Whether this replica is the faulty one, kept true for at most one replica."""

    def __init__(self, client: Redis, mode: str) -> None:
        self.client = client
        self.mode = mode
        self.holder_id = uuid.uuid4().hex  # this process, not its host
        self._valid_until = 0.0  # monotonic time the lease is ours until
        self._task: asyncio.Task | None = None

    @property
    def faulty(self) -> bool:
        return time.monotonic() < self._valid_until

    async def claim(self) -> bool:
        """Take or renew the lease once; a Redis error leaves the current lease to run out."""
        sent = time.monotonic()
        try:
            won = await self.client.eval(_CLAIM, 1, LEASE_KEY, self.holder_id, LEASE_MS)
        except RedisError as exc:
            log.warning("fault lease: Redis unavailable (%s)", exc)
            return self.faulty
        was = self.faulty
        # Counted from before the command was sent, so ours ends before Redis's does.
        self._valid_until = sent + LEASE_MS / 1000.0 if won else 0.0
        if won and not was:
            log.warning("this replica is now the faulty one (FAULT=%s, id %s)",
                        self.mode, self.holder_id)
        elif was and not won:
            log.warning("this replica is no longer the faulty one")
        return bool(won)

    async def start(self) -> None:
        """First claim before the replica serves, then renew in the background."""
        await self.claim()
        self._task = asyncio.create_task(self._renew_forever())

    async def stop(self) -> None:
        """Stop renewing and give the lease back, so another replica takes over at once."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._valid_until:
            self._valid_until = 0.0
            try:
                await self.client.eval(_RELEASE, 1, LEASE_KEY, self.holder_id)
            except RedisError:
                pass  # it runs out by itself

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            await self.claim()


class ErrorBudget:
    """Which requests fail: after n requests, floor(n × rate) have failed, evenly spread."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.seen = 0

    def next_fails(self) -> bool:
        self.seen += 1
        return math.floor(self.seen * self.rate) > math.floor((self.seen - 1) * self.rate)


class FaultMiddleware:
    """ASGI middleware that makes the faulty replica fail or slow its requests."""

    def __init__(self, app, *, lease_of, mode: str, error_rate: float, slow_factor: float,
                 spared: tuple[str, ...] = ("/healthz",)) -> None:
        self.app = app
        self.lease_of = lease_of  # () -> FaultLease | None, set once the app has started
        self.mode = mode
        self.budget = ErrorBudget(error_rate)
        self.slow_factor = slow_factor
        self.spared = spared

    async def __call__(self, scope, receive, send) -> None:
        lease = self.lease_of()
        if (scope["type"] != "http" or scope["path"] in self.spared or lease is None
                or not lease.faulty):
            await self.app(scope, receive, send)
            return
        if self.mode == "errors":
            if self.budget.next_fails():
                await _internal_error(send)
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._slowed(send))

    def _slowed(self, send):
        """Hold the response's start until the request has taken factor × its time."""
        started = time.perf_counter()
        held = False

        async def slow_send(message) -> None:
            nonlocal held
            if not held and message["type"] == "http.response.start":
                held = True
                spent = time.perf_counter() - started
                await asyncio.sleep((self.slow_factor - 1.0) * spent)
            await send(message)

        return slow_send


async def _internal_error(send) -> None:
    body = b'{"error":"internal server error"}'
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
