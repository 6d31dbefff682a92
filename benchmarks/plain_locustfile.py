"""The collector benchmark's control: the same request, no harness, no listener."""

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class PlainUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def hello(self) -> None:
        self.client.get("/", headers={"Accept": "application/json"}, name="/")
