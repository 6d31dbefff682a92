"""An app the harness does not control: it records traffic at whatever scale it has."""

from __future__ import annotations

import time
from urllib.parse import urlparse

from loadtest.stack.base import Replica, ScaleResult, Stack, StackError, StackSettings


class ExternalStack(Stack):
    name = "external"
    controlled = False

    def __init__(self, url: str, expect_replicas: int | None = None) -> None:
        super().__init__()
        parsed = urlparse(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StackError(f"--stack external needs the app's URL: pass -H http://HOST:PORT "
                             f"(got {url!r})")
        self._url = url.rstrip("/")
        self.expect_replicas = expect_replicas

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--expect-replicas", type=int, default=0, metavar="N",
            help="--stack external: how many replicas should answer (so one replica answering "
                 "everything is flagged); 0 = not known (default)")

    @classmethod
    def from_settings(cls, settings: StackSettings) -> ExternalStack:
        expect = int(settings.options.get("expect_replicas") or 0)
        if expect < 0:
            raise StackError("--expect-replicas must be 0 (not known) or more")
        return cls(settings.url or "", expect or None)

    @property
    def url(self) -> str:
        return self._url

    def up(self, replicas: int) -> ScaleResult:
        now = time.time()
        return ScaleResult(replicas, now, now)

    def scale(self, replicas: int, by: str = "plan") -> ScaleResult:
        # Nothing to do, and nothing to wait for: the harness only observes.
        now = time.time()
        return ScaleResult(replicas, now, now)

    def _apply_scale(self, replicas: int) -> tuple[list[str], list[str]]:
        return [], []

    def _wait_routed(self, replicas: int) -> None:
        pass

    def replicas(self) -> list[Replica]:
        return []

    def read_counter(self) -> int | None:
        return None

    def down(self) -> None:
        pass

    def describe(self) -> dict:
        return {**super().describe(), "expect_replicas": self.expect_replicas}
