"""The shop's HTTP API (Starlette), its state in Redis.

    GET    /healthz               200 {"status": "ok"}; 503 while draining after SIGTERM
    GET    /products              the catalogue
    GET    /products/{id}         one product, 404 if unknown
    GET    /cart/{user}           the user's cart: items, quantities, total
    POST   /cart/{user}           add {"product": id, "qty": n} (qty 1-99, default 1)
    DELETE /cart/{user}           empty the cart
    POST   /cart/{user}/checkout  turn the cart into an order numbered from one sequence
    GET    /products/{id}/reviews every review of a product, oldest first
    POST   /products/{id}/reviews add {"text": "..."} (1-200 characters)

Every answer is JSON and none names the host: which replica served a request is
for the balancer to say. Redis unreachable or too slow: 503 (the request's
outcome is then unknown for a write). /healthz does not touch Redis, so a Redis
outage does not take every replica out of the balancer at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shop.catalogue import BY_ID, PRODUCTS
from shop.faults import FaultLease, FaultMiddleware
from shop.settings import Settings, settings_from_env

log = logging.getLogger("shop")

CATALOGUE_KEY = "shop:catalogue"
CATALOGUE_JSON = json.dumps({"products": list(PRODUCTS)}, separators=(",", ":"))
ORDER_SEQ_KEY = "shop:orders:seq"
ORDER_TTL_S = 24 * 3600
USER_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
BAD_USER = "a user is 1-64 letters, digits, '_', '-' or '.'"
MAX_QTY = 99
MAX_REVIEW = 200


def cart_key(user: str) -> str:
    return f"shop:cart:{user}"


def reviews_key(product_id: str) -> str:
    return f"shop:reviews:{product_id}"


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the app; Redis is connected when it starts (uvicorn's lifespan)."""
    settings = settings or settings_from_env()
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/products", list_products, methods=["GET"]),
            Route("/products/{product_id}", get_product, methods=["GET"]),
            Route("/products/{product_id}/reviews", get_reviews, methods=["GET"]),
            Route("/products/{product_id}/reviews", add_review, methods=["POST"]),
            Route("/cart/{user}", get_cart, methods=["GET"]),
            Route("/cart/{user}", add_to_cart, methods=["POST"]),
            Route("/cart/{user}", empty_cart, methods=["DELETE"]),
            Route("/cart/{user}/checkout", checkout, methods=["POST"]),
        ],
        middleware=[Middleware(FaultMiddleware, lease_of=lambda: app.state.lease,
                               mode=settings.fault, error_rate=settings.fault_error_rate,
                               slow_factor=settings.fault_slow_factor)],
        exception_handlers={RedisError: redis_unavailable},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.draining = False
    app.state.lease = None
    return app


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    settings: Settings = app.state.settings
    # One attempt per command: redis-py's default retry after a timeout can
    # apply a write twice (HINCRBY, INCR).
    client = Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout,
                            socket_connect_timeout=settings.redis_timeout,
                            retry=Retry(NoBackoff(), 0), decode_responses=True)
    app.state.redis = client
    if settings.fault:
        app.state.lease = FaultLease(client, settings.fault)
        await app.state.lease.start()
    try:
        yield
    finally:
        if app.state.lease is not None:
            await app.state.lease.stop()
        await client.aclose()


async def healthz(request: Request) -> JSONResponse:
    if request.app.state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def list_products(request: Request) -> JSONResponse:
    await _spend(request)
    # Served as cached: a read-mostly page should not decode and re-encode it.
    return Response(await _catalogue_json(request.app.state.redis),
                    media_type="application/json")


async def get_product(request: Request) -> JSONResponse:
    await _spend(request)
    product_id = request.path_params["product_id"]
    if product_id not in BY_ID:
        return _error(404, f"no product {product_id!r}")
    products = await _catalogue(request.app.state.redis)
    return JSONResponse(products[product_id])


async def get_reviews(request: Request) -> JSONResponse:
    product_id = request.path_params["product_id"]
    if product_id not in BY_ID:
        return _error(404, f"no product {product_id!r}")
    await _spend(request)
    reviews = await request.app.state.redis.lrange(reviews_key(product_id), 0, -1)
    return JSONResponse({"product": product_id, "reviews": reviews})


async def add_review(request: Request) -> JSONResponse:
    """Shoppers review a product at the same time, on any replica: every review added
    must be in every list read after it (shared state, for scalecheck's set checks)."""
    product_id = request.path_params["product_id"]
    if product_id not in BY_ID:
        return _error(404, f"no product {product_id!r}")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON: {\"text\": \"...\"}")
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_REVIEW:
        return _error(422, f"text must be 1 to {MAX_REVIEW} characters")
    await _spend(request)
    await request.app.state.redis.rpush(reviews_key(product_id), text)
    return JSONResponse({"product": product_id, "review": text}, status_code=201)


async def get_cart(request: Request) -> JSONResponse:
    user = _user(request)
    if user is None:
        return _error(400, BAD_USER)
    await _spend(request)
    client = request.app.state.redis
    items = await client.hgetall(cart_key(user))
    products = await _catalogue(client) if items else {}
    return JSONResponse(_cart_view(user, items, products))


async def add_to_cart(request: Request) -> JSONResponse:
    user = _user(request)
    if user is None:
        return _error(400, BAD_USER)
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON: {\"product\": ID, \"qty\": N}")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object: {\"product\": ID, \"qty\": N}")
    product_id, qty = body.get("product"), body.get("qty", 1)
    if not isinstance(product_id, str) or product_id not in BY_ID:
        return _error(404, f"no product {product_id!r}")
    if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_QTY:
        return _error(422, f"qty must be a whole number from 1 to {MAX_QTY}")
    await _spend(request)
    in_cart = await request.app.state.redis.hincrby(cart_key(user), product_id, qty)
    return JSONResponse({"user": user, "product": product_id, "qty": in_cart},
                        status_code=201)


async def empty_cart(request: Request) -> JSONResponse:
    user = _user(request)
    if user is None:
        return _error(400, BAD_USER)
    await _spend(request)
    await request.app.state.redis.delete(cart_key(user))
    return JSONResponse({"user": user, "items": [], "total_cents": 0})


async def checkout(request: Request) -> JSONResponse:
    user = _user(request)
    if user is None:
        return _error(400, BAD_USER)
    await _spend(request)
    client = request.app.state.redis
    # Read and clear the cart in one transaction: two checkouts of one cart
    # cannot both get its items.
    async with client.pipeline(transaction=True) as pipe:
        items, _ = await pipe.hgetall(cart_key(user)).delete(cart_key(user)).execute()
    if not items:
        return _error(409, "the cart is empty")
    view = _cart_view(user, items, await _catalogue(client))
    order = await client.incr(ORDER_SEQ_KEY)
    await client.set(f"shop:order:{order}", json.dumps(view), ex=ORDER_TTL_S)
    return JSONResponse({"order": order, **view}, status_code=201)


async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: Redis: %s", request.method, request.url.path, exc)
    return _error(503, "the shop's cache is unavailable, try again")


async def _catalogue_json(client: Redis) -> str:
    """The catalogue as the cache holds it (one JSON document), refilled from the source
    when the cache lost it."""
    cached = await client.get(CATALOGUE_KEY)
    if cached is None:
        cached = CATALOGUE_JSON
        # NX: replicas refilling at once write the same document; the first one stays.
        await client.set(CATALOGUE_KEY, cached, nx=True)
    return cached


async def _catalogue(client: Redis) -> dict[str, dict]:
    """The catalogue by product id."""
    products = json.loads(await _catalogue_json(client))["products"]
    return {p["id"]: p for p in products}


def _cart_view(user: str, items: dict[str, str], products: dict[str, dict]) -> dict:
    lines = []
    for product_id in sorted(items):
        qty = int(items[product_id])
        price = products.get(product_id, BY_ID.get(product_id, {})).get("price_cents", 0)
        lines.append({"product": product_id, "qty": qty, "price_cents": price})
    total = sum(line["qty"] * line["price_cents"] for line in lines)
    return {"user": user, "items": lines, "total_cents": total}


def _user(request: Request) -> str | None:
    user = request.path_params["user"]
    return user if USER_RE.fullmatch(user) else None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _spend(request: Request) -> None:
    """A request's cost: ``CPU_MS`` of this thread's CPU time (it holds the event loop,
    as real work in an async app does), then ``WAIT_MS`` waited (as for a database)."""
    settings: Settings = request.app.state.settings
    if settings.cpu_ms > 0:
        until = time.thread_time() + settings.cpu_ms / 1000.0
        while time.thread_time() < until:
            sum(range(100))  # a few microseconds between clock reads
    if settings.wait_ms > 0:
        await asyncio.sleep(settings.wait_ms / 1000.0)
