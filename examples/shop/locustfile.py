"""The shop's load test: shoppers browse the catalogue, fill a cart, check out.

Four lines (marked ``scalecheck``) make it a scalecheck locustfile: the
harness's listeners, the shape that follows its run plan, and a user class that
counts every attempt on the wire and sends the request id the balancer logs. The
reviews say what they do to shared state (``operation``, ``saw``): the harness checks
that no review added is lost or missing from a later read, on any replica (each shopper is
one client, with nothing more to declare). With them, the
harness decides the load and the stack (see README.md), for example against a
shop already running:

    locust -f examples/shop/locustfile.py --headless -u 20 -r 5 --stage-time 1m \
        --stack external -H http://127.0.0.1:5000 --counter-field none

Without those lines (and with ``FastHttpUser``) it is an ordinary Locust file:

    locust -f locustfile.py -H http://127.0.0.1:5000 --headless -u 20 -r 5 -t 1m
"""

from __future__ import annotations

import itertools
import random

from locust import between, events, task

from loadtest import harness  # scalecheck
from loadtest.ops import operation, saw  # scalecheck: what a request did to shared state
from loadtest.shape import PlanShape  # noqa: F401 - scalecheck: Locust finds the shape here
from loadtest.users import ScalecheckHttpUser  # scalecheck: a FastHttpUser that tells all

harness.install(events)  # scalecheck

_shopper_ids = itertools.count(1)


class Shopper(ScalecheckHttpUser):
    wait_time = between(0.05, 0.25)

    def on_start(self) -> None:
        self.number = next(_shopper_ids)
        self.name = f"shopper-{self.number}"
        self.in_cart = 0
        self.reviews = itertools.count(1)
        with self.client.get("/products", name="/products", catch_response=True) as resp:
            if resp.status_code == 200:
                self.product_ids = [p["id"] for p in resp.json()["products"]]
            else:
                resp.failure(f"no catalogue: HTTP {resp.status_code}")
                self.product_ids = ["p01"]

    @task(6)
    def browse(self) -> None:
        self.client.get("/products", name="/products")

    @task(2)
    def view_product(self) -> None:
        self.client.get(f"/products/{random.choice(self.product_ids)}", name="/products/[id]")

    @task(3)
    def add_to_cart(self) -> None:
        body = {"product": random.choice(self.product_ids), "qty": random.randint(1, 3)}
        resp = self.client.post(f"/cart/{self.name}", json=body, name="/cart/[user] add")
        if resp.status_code == 201:
            self.in_cart += 1

    @task(2)
    def view_cart(self) -> None:
        self.client.get(f"/cart/{self.name}", name="/cart/[user]")

    @task(1)
    def checkout(self) -> None:
        if not self.in_cart:
            return
        resp = self.client.post(f"/cart/{self.name}/checkout", name="/cart/[user]/checkout")
        if resp.status_code in (201, 409):  # 409: the cart was empty after all
            self.in_cart = 0

    @task(1)
    def review(self) -> None:
        product = random.choice(self.product_ids)
        text = f"{self.name}:{next(self.reviews)}"  # unique, so each one can be followed
        self.client.post(f"/products/{product}/reviews", json={"text": text},
                         name="/products/[id]/reviews add",
                         context=operation("add", f"reviews:{product}", text))

    @task(2)
    def read_reviews(self) -> None:
        product = random.choice(self.product_ids)
        with self.client.get(f"/products/{product}/reviews", name="/products/[id]/reviews",
                             catch_response=True,
                             context=operation("read-all", f"reviews:{product}")) as resp:
            if resp.status_code == 200:
                saw(resp, resp.json()["reviews"])
