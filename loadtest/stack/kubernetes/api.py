"""A few JSON requests to the cluster's apiserver, with the admin certificate.

start() and stop() only need to read a handful of objects and create three
(metrics-server's Service, Endpoints and APIService): the standard library does
that without importing the ``kubernetes`` client (seconds of import, and a
thread pool) into the harness's process.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass
class Api:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    timeout: float = 10.0

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """One request; the decoded JSON answer, or ApiError with the status."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                           context=self._context())
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload,
                         headers={"Content-Type": "application/json",
                                  "Accept": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data[:200].decode(errors="replace")
            raise ApiError(response.status, message)
        try:
            return json.loads(data) if data else {}
        except ValueError:
            return {"raw": data.decode(errors="replace")}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def create(self, path: str, body: dict) -> dict:
        """POST, treating 'already exists' as done (start() may retry)."""
        try:
            return self.request("POST", path, body)
        except ApiError as exc:
            if exc.status == 409:
                return {}
            raise

    def ok(self, path: str) -> bool:
        """True if GET ``path`` answers 2xx (connection errors count as no)."""
        try:
            self.get(path)
            return True
        except (OSError, ApiError, ssl.SSLError):
            return False
