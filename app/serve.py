"""Serve the hello app with gunicorn, draining gracefully on SIGTERM.

Plain gunicorn closes its listening socket as soon as it gets SIGTERM, so a
balancer that has not yet noticed would see refused connections. Here the
first SIGTERM only starts a drain: /health fails (so the balancer stops
routing here), requests keep being served for ``DRAIN_SECONDS``, then the
normal graceful stop runs. A second SIGTERM stops at once (gracefully).

Usage: ``python -m scalecheck_hello.serve`` where scalecheck is installed (its installed
name), ``python -m app.serve`` in its image (the folder copied as is; its imports are
relative, so either name works), with ``PORT`` (default 8000), ``BIND_HOST`` (default
0.0.0.0), ``DRAIN_SECONDS`` (default 3), ``WEB_THREADS`` (default 4).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from . import create_app

# Shared memory created before the worker forks, so the arbiter can tell the
# workers that it is draining without any IPC of its own.
_DRAINING = multiprocessing.Value("b", 0, lock=False)


class DrainingArbiter(Arbiter):
    drain_seconds: float = 3.0
    _drain_started = False

    def handle_term(self) -> None:
        if self._drain_started or self.drain_seconds <= 0:
            raise StopIteration
        self._drain_started = True
        _DRAINING.value = 1
        self.log.info("SIGTERM: draining for %.1fs before stopping", self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, self.SIG_QUEUE.put_nowait, (signal.SIGTERM,))
        timer.daemon = True
        timer.start()


class HelloServer(BaseApplication):
    def __init__(self, options: dict, drain_seconds: float) -> None:
        self.options = options
        self.drain_seconds = drain_seconds
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        # gunicorn >= 24 opens a control socket at one fixed path per user;
        # replicas side by side would fight over it, and nothing here uses it.
        if "control_socket_disable" in self.cfg.settings:
            self.cfg.set("control_socket_disable", True)

    def load(self):
        return create_app(is_draining=lambda: _DRAINING.value == 1)

    def run(self) -> None:
        arbiter = DrainingArbiter(self)
        arbiter.drain_seconds = self.drain_seconds
        arbiter.run()


def main() -> None:
    drain = float(os.environ.get("DRAIN_SECONDS", "3"))
    options = {
        "bind": f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}",
        "workers": int(os.environ.get("WEB_WORKERS", "1")),
        "worker_class": "gthread",
        "threads": int(os.environ.get("WEB_THREADS", "4")),
        # In-flight requests get this long after the drain ends.
        "graceful_timeout": 5,
        "accesslog": os.environ.get("ACCESS_LOG") or None,
        "errorlog": "-",
        "loglevel": os.environ.get("LOG_LEVEL", "info"),
        "proc_name": f"hello-{os.environ.get('HELLO_HOSTNAME', '')}".rstrip("-"),
    }
    HelloServer(options, drain).run()


if __name__ == "__main__":
    main()
