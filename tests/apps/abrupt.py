"""A team's app that does not drain: each ``GET /`` takes ``SLOW_S`` seconds (default 2),
``/healthz`` answers at once, and SIGTERM ends the process at once (Python's default),
cutting whatever is in flight. The tests use it as the real run that cuts requests."""

import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path != "/healthz":
            time.sleep(float(os.environ.get("SLOW_S", "2")))
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet: the harness keeps the replicas' output
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
