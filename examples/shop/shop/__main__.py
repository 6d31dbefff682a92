"""Serve the shop with uvicorn: ``python -m shop``.

``PORT`` (5000) and ``BIND_HOST`` (0.0.0.0) say where to listen; see
``shop.settings`` for the rest. On SIGTERM uvicorn stops accepting connections,
lets the requests in flight finish (10 s at most), closes Redis and exits. With
``DRAIN_SECONDS`` > 0 the first SIGTERM starts a drain instead: /healthz answers
503 so the balancer stops choosing this replica, requests are still served for
that long, then the stop above runs; a second SIGTERM stops at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable

import uvicorn

from shop.app import create_app
from shop.settings import SettingsError, settings_from_env

GRACEFUL_TIMEOUT_S = 10


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a drain between the first SIGTERM and the stop."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float,
                 on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.on_drain = on_drain
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame) -> None:
        if (sig == signal.SIGTERM and self.drain_seconds > 0 and self._drain_until is None
                and not self.should_exit):
            # In a signal handler: only note the time; the server's tick does the rest.
            self._drain_until = time.monotonic() + self.drain_seconds
            self.on_drain()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self._drain_until = float("inf")
            logging.getLogger("shop").info("drain over: stopping")
            super().handle_exit(signal.SIGTERM, None)  # the stop uvicorn makes for a SIGTERM
        return await super().on_tick(counter)


def main() -> None:
    try:
        settings = settings_from_env()
    except SettingsError as exc:
        print(f"shop: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)

    def start_drain() -> None:
        app.state.draining = True
        logging.getLogger("shop").info("SIGTERM: draining for %.1fs", settings.drain_seconds)

    config = uvicorn.Config(app, host=settings.bind_host, port=settings.port,
                            log_level=settings.log_level, access_log=settings.access_log,
                            timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S, lifespan="on")
    DrainingServer(config, settings.drain_seconds, start_drain).run()


if __name__ == "__main__":
    main()
