"""An app the harness does not control: it records traffic at whatever scale it has."""

from __future__ import annotations

import time
from urllib.parse import urlparse

from loadtest.stack.base import Replica, ScaleResult, Stack, StackError


class ExternalStack(Stack):
    name = "external"
    controlled = False

    def __init__(self, url: str) -> None:
        super().__init__()
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StackError(f"not an http(s) URL: {url!r}")
        self._url = url.rstrip("/")

    @property
    def url(self) -> str:
        return self._url

    def up(self, replicas: int) -> ScaleResult:
        now = time.time()
        return ScaleResult(replicas, now, now)

    def scale(self, replicas: int) -> ScaleResult:
        # Nothing to do, and nothing to wait for: the harness only observes.
        now = time.time()
        return ScaleResult(replicas, now, now)

    def replicas(self) -> list[Replica]:
        return []

    def read_counter(self) -> int | None:
        return None

    def down(self) -> None:
        pass
