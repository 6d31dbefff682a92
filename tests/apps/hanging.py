"""A team's app that hangs: ``GET /`` sleeps ``HANG_S`` seconds (default 60) once in
``HANG_EVERY`` requests (default 10; 1: it accepts and never answers in time; 0: never),
and answers at once otherwise; ``/healthz`` always answers. With ``IGNORE_SIGTERM=1`` it
must be killed. The tests use it as the app that held the load generator's users while
every answer that came back looked fine, and as the one a harness killed by SIGKILL
must not leave behind."""

import os
import random
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVERY = int(os.environ.get("HANG_EVERY", "10"))
HANG_S = float(os.environ.get("HANG_S", "60"))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/healthz" and EVERY and random.randrange(EVERY) == 0:
            time.sleep(HANG_S)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    if os.environ.get("IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
