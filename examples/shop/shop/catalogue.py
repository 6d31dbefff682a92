"""The catalogue's source of truth, standing in for the team's database.

Redis holds a copy (``shop:catalogue``, one JSON document), filled on a miss:
a Redis that restarts empty refills itself at the next read.
"""

from __future__ import annotations

PRODUCTS: tuple[dict, ...] = (
    {"id": "p01", "name": "Espresso beans, 1 kg", "price_cents": 2490},
    {"id": "p02", "name": "Filter coffee, 500 g", "price_cents": 1190},
    {"id": "p03", "name": "Green tea, 100 g", "price_cents": 690},
    {"id": "p04", "name": "Ceramic mug", "price_cents": 1250},
    {"id": "p05", "name": "Pour-over dripper", "price_cents": 2200},
    {"id": "p06", "name": "Paper filters, 100", "price_cents": 450},
    {"id": "p07", "name": "Hand grinder", "price_cents": 4900},
    {"id": "p08", "name": "Milk jug", "price_cents": 1590},
    {"id": "p09", "name": "Kitchen scale", "price_cents": 2750},
    {"id": "p10", "name": "Cold brew bottle", "price_cents": 1990},
    {"id": "p11", "name": "Cocoa, 250 g", "price_cents": 590},
    {"id": "p12", "name": "Gift card", "price_cents": 2500},
)
BY_ID: dict[str, dict] = {p["id"]: p for p in PRODUCTS}
