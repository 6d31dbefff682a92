"""A team's JSON record store, as Kinto is one: records under keys with a version each,
optimistic locking, and a feed per key. Starlette on uvicorn, its state in Redis. The
tests use it as an app that is not ours and answers 4xx on purpose.

    GET  /records/{key}        200 {"key", "value", "version"} with ETag "<version>"; 404
    PUT  /records/{key}        {"value": v}; If-Match "<version>" makes it a compare-and-
                               set: 412 when the record is at another version. A write
                               that another write overtook between its read and its commit
                               is refused, 409, and writes nothing (as Kinto does)
    POST /records/{key}/items  {"item": x}: appended, 201
    GET  /records/{key}/items  200 {"items": [...]} in the order appended
    GET  /healthz              200

``STORE`` (``redis``, the correct one) chooses where state lives:

- ``redis``: Redis, a record written with WATCH/MULTI/EXEC on its version: a commit
  whose record changed after it was read fails, and the request answers 409;
- ``memory``: this replica's memory (the classic stateful-replica bug);
- ``cached``: records read through a copy in each replica's memory kept ``CACHE_TTL``
  seconds (default 2), and ``If-Match`` compared with that copy's version, then written
  unconditionally: a stale copy serves old values and lets a compare-and-set overwrite
  a newer record (lost update). Feeds stay in Redis.

``WORK_MS`` (default 2) is the work between reading a record and committing it, as a
real app validates and transforms: the window in which concurrent writes conflict.
``PORT`` says where to listen; ``REDIS_URL`` where Redis is (``--with-redis`` gives it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

import uvicorn
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

STORE = os.environ.get("STORE", "redis")
WORK_S = float(os.environ.get("WORK_MS", "2")) / 1000.0
CACHE_TTL = float(os.environ.get("CACHE_TTL", "2"))


class RedisRecords:
    """Records as Redis hashes {value, version}; feeds as Redis lists."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    async def get(self, key: str) -> tuple[object, int] | None:
        raw = await self.client.hgetall(f"rec:{key}")
        return None if not raw else (json.loads(raw[b"value"]), int(raw[b"version"]))

    async def put(self, key: str, value: object, if_match: int | None) -> tuple[int, int]:
        """(status, version): 200 written, 412 another version, 409 overtaken."""
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(f"rec:{key}")
            raw = await pipe.hgetall(f"rec:{key}")
            version = int(raw[b"version"]) if raw else 0
            if if_match is not None and if_match != version:
                return 412, version
            await asyncio.sleep(WORK_S)
            pipe.multi()
            pipe.hset(f"rec:{key}", mapping={"value": json.dumps(value),
                                               "version": version + 1})
            try:
                await pipe.execute()
            except WatchError:
                return 409, version
            return 200, version + 1

    async def append(self, key: str, item: object) -> None:
        await self.client.rpush(f"feed:{key}", json.dumps(item))

    async def items(self, key: str) -> list:
        return [json.loads(raw) for raw in await self.client.lrange(f"feed:{key}", 0, -1)]


class MemoryRecords:
    """This replica's own memory: every replica has records of its own."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[object, int]] = {}
        self.feeds: dict[str, list] = {}

    async def get(self, key: str) -> tuple[object, int] | None:
        return self.records.get(key)

    async def put(self, key: str, value: object, if_match: int | None) -> tuple[int, int]:
        version = self.records.get(key, (None, 0))[1]
        if if_match is not None and if_match != version:
            return 412, version
        self.records[key] = (value, version + 1)
        return 200, version + 1

    async def append(self, key: str, item: object) -> None:
        self.feeds.setdefault(key, []).append(item)

    async def items(self, key: str) -> list:
        return list(self.feeds.get(key, []))


class CachedRecords(RedisRecords):
    """Redis behind a per-replica copy of each record, trusted for If-Match too."""

    def __init__(self, client: Redis) -> None:
        super().__init__(client)
        self.copies: dict[str, tuple[float, tuple[object, int] | None]] = {}

    async def get(self, key: str) -> tuple[object, int] | None:
        hit = self.copies.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        record = await super().get(key)
        self.copies[key] = (time.monotonic() + CACHE_TTL, record)
        return record

    async def put(self, key: str, value: object, if_match: int | None) -> tuple[int, int]:
        current = await self.get(key)
        version = current[1] if current else 0
        if if_match is not None and if_match != version:
            return 412, version
        await self.client.hset(f"rec:{key}", mapping={"value": json.dumps(value),
                                                      "version": version + 1})
        self.copies[key] = (time.monotonic() + CACHE_TTL, (value, version + 1))
        return 200, version + 1


def _etag(version: int) -> dict:
    return {"ETag": f'"{version}"'}


async def get_record(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    record = await request.app.state.records.get(key)
    if record is None:
        return JSONResponse({"error": f"no record {key!r}"}, status_code=404)
    value, version = record
    return JSONResponse({"key": key, "value": value, "version": version},
                        headers=_etag(version))


async def put_record(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "value" not in body:
        return JSONResponse({"error": 'the body must be {"value": ...}'}, status_code=400)
    if_match = request.headers.get("if-match")
    try:
        expected = None if if_match is None else int(if_match.strip('"'))
    except ValueError:
        return JSONResponse({"error": "If-Match must be a version"}, status_code=400)
    status, version = await request.app.state.records.put(key, body["value"], expected)
    if status == 412:
        return JSONResponse({"error": "the record is at another version"}, status_code=412,
                            headers=_etag(version))
    if status == 409:
        return JSONResponse({"error": "conflict: the record changed while it was written"},
                            status_code=409)
    return JSONResponse({"key": key, "value": body["value"], "version": version},
                        headers=_etag(version))


async def append_item(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "item" not in body:
        return JSONResponse({"error": 'the body must be {"item": ...}'}, status_code=400)
    await request.app.state.records.append(key, body["item"])
    return JSONResponse({"key": key, "item": body["item"]}, status_code=201)


async def get_items(request: Request) -> JSONResponse:
    key = request.path_params["key"]
    return JSONResponse({"key": key, "items": await request.app.state.records.items(key)})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"store unavailable: {type(exc).__name__}"},
                        status_code=503)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    client = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                            socket_timeout=1.0, socket_connect_timeout=1.0,
                            retry=Retry(NoBackoff(), 0))  # a command sent once, never twice
    app.state.records = {"redis": RedisRecords, "cached": CachedRecords}[STORE](client) \
        if STORE != "memory" else MemoryRecords()
    try:
        yield
    finally:
        await client.aclose()


app = Starlette(routes=[
    Route("/healthz", healthz),
    Route("/records/{key}", get_record, methods=["GET"]),
    Route("/records/{key}", put_record, methods=["PUT"]),
    Route("/records/{key}/items", get_items, methods=["GET"]),
    Route("/records/{key}/items", append_item, methods=["POST"]),
], exception_handlers={RedisError: unavailable}, lifespan=lifespan)


if __name__ == "__main__":
    if STORE not in ("redis", "memory", "cached"):
        raise SystemExit(f"records: STORE must be redis, memory or cached, not {STORE!r}")
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning",
                timeout_graceful_shutdown=5)
