"""The harness's balancer fed from the EndpointSlices, as an ingress controller is.

A thread keeps the balancer's servers equal to the endpoints the slices call ready
(``Tracker.routable``), named by their pods: a pod the endpoint controller drops
(it terminates, or fails its readiness probe) leaves rotation when the balancer
applies the change, not before, so a pod that stops at SIGTERM while the balancer
still sends it requests cuts them, exactly as on a cluster with ingress-nginx or
Traefik's Kubernetes provider. What leaves goes first (the balancer's removal:
no new request, then out of its configuration), then what arrives (HAProxy adds
a server once its own connection check passes). Each pod routed is
``replica_added`` with the time the balancer took it in.
"""

from __future__ import annotations

import logging
import threading
import time

from loadtest.contract import events as ev
from loadtest.stack.balancers.base import LocalBalancer
from loadtest.stack.base import StackError
from loadtest.stack.kubernetes.tracker import Note, Tracker

log = logging.getLogger("scalecheck")


class BalancerFeed:
    def __init__(self, lb: LocalBalancer, tracker: Tracker, note: Note,
                 idle_timeout: float = 2.0) -> None:
        self.lb = lb
        self.tracker = tracker
        self.note = note
        self.idle_timeout = idle_timeout
        self.routed: dict[str, str] = {}   # pod -> address, as the balancer has them
        self.since: dict[str, float] = {}  # pod -> when it was routed
        self.lock = threading.RLock()      # around every call to the balancer
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="balancer-feed", daemon=True)

    def start(self) -> BalancerFeed:
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.tracker.changed.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tracker.changed.wait(0.5)
            self.tracker.changed.clear()
            if self._stop.is_set():
                return
            try:
                self.sync()
                self.error = None
            except StackError as exc:  # the balancer refused: say it, try again
                if self.error != str(exc):
                    log.warning("scalecheck: feeding %s: %s", self.lb.name, exc)
                self.error = str(exc)
                self.tracker.changed.set()
                self._stop.wait(0.2)

    def sync(self) -> None:
        """Make the balancer route to exactly the ready endpoints, leavers first."""
        desired = self.tracker.routable()
        with self.lock:
            if not self.lb.alive():
                return
            leaving = {n for n, a in self.routed.items() if desired.get(n) != a}
            if leaving:
                self.lb.begin_removal(leaving)
                now = time.time()
                for name in leaving:
                    self.routed.pop(name, None)
                    self.since.pop(name, None)
                    self.tracker.unrouted(name, now)
                self.lb.wait_idle(leaving, self.idle_timeout)
                self.lb.finish_removal(leaving)
        for name, address in desired.items():
            if self._stop.is_set() or name in self.routed:
                continue
            with self.lock:
                try:
                    self.lb.add(name, address)
                except StackError:
                    self._forget(name)
                    raise
                now = time.time()
                self.routed[name] = address
                self.since[name] = now
            self.tracker.routed(name, now)
            self.note(ev.REPLICA_ADDED, now, hostname=name, address=address,
                      pod_ip=address.rsplit(":", 1)[0])

    def _forget(self, name: str) -> None:
        try:
            self.lb.forget(name)
        except StackError:
            pass

    def routes_exactly(self, names: set[str]) -> bool:
        """The balancer has exactly these pods, all UP, and nothing else is pending."""
        with self.lock:
            return set(self.routed) == names and self.lb.routes_exactly(names)

    def restart_balancer(self) -> None:
        with self.lock:
            self.lb.restart()


__all__ = ["BalancerFeed"]
