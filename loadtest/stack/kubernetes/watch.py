"""List-then-watch of one kind of object, in a thread, as client-go's informers do.

The list gives the state and a resourceVersion; the watch gives every change after it,
each handed on with the time this process saw it. A watch the server ends (its
timeout, a few seconds: the thread notices ``stop`` soon) is resumed from the last
version seen; a version too old for the server (410 Gone) means listing again, and the
list is handed on as changes too. Under Locust the thread is a greenlet (gevent
patches ``threading`` and sockets), in the stack CLI a real thread: the callback must
be safe from either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from loadtest.stack.kubernetes.rest import Kube, KubeError

log = logging.getLogger("scalecheck")
Handler = Callable[[str, dict, float], None]  # (ADDED | MODIFIED | DELETED, object, seen at)


class Informer:
    def __init__(self, kube: Kube, path: str, handler: Handler, name: str,
                 selector: str | None = None, window: int = 5) -> None:
        self.kube = kube
        self.path = path
        self.handler = handler
        self.selector = selector
        self.window = window
        self.synced = threading.Event()  # the first list was handed on
        self.error: str | None = None
        self._stop = threading.Event()
        self._known: dict[str, dict] = {}
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 0.0) -> None:
        self._stop.set()
        if timeout:
            self._thread.join(timeout)

    def _query(self) -> dict:
        return {"labelSelector": self.selector} if self.selector else {}

    def _run(self) -> None:
        version = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                for event in self.kube.watch(self.path, version, self.window, **self._query()):
                    if self._stop.is_set():
                        return
                    version = self._handle(event) or version
                failures = 0
            except KubeError as exc:
                if exc.status == 410:  # too old: start again from a list
                    version = None
                    continue
                failures += 1
                self.error = str(exc)
                if failures in (3, 30):
                    log.warning("scalecheck: watching %s: %s", self.path, exc)
                self._stop.wait(min(2.0, 0.1 * failures))
            except (OSError, ValueError) as exc:  # a connection cut mid-stream: resume
                failures += 1
                self.error = str(exc)
                self._stop.wait(min(2.0, 0.1 * failures))

    def _list(self) -> str:
        listing = self.kube.get(self.path, **self._query())
        now = time.time()
        seen = {}
        for item in listing.get("items") or []:
            key = item["metadata"]["name"]
            seen[key] = item
            self.handler("MODIFIED" if key in self._known else "ADDED", item, now)
        for key in set(self._known) - set(seen):  # gone while we were not watching
            self.handler("DELETED", self._known[key], now)
        self._known = seen
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _handle(self, event: dict) -> str | None:
        kind, obj = event.get("type"), event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            return version
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            raise KubeError(f"watch {self.path}: {obj.get('message')}", code)
        key = obj["metadata"]["name"]
        if kind == "DELETED":
            self._known.pop(key, None)
        else:
            self._known[key] = obj
        self.handler(str(kind), obj, time.time())
        return version


__all__ = ["Informer"]
