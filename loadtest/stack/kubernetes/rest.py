"""The cluster's API as plain JSON, through the official client's connection.

The generated models of the ``kubernetes`` package cost CPU to build for every
object of every watch event, on machines where the load generator and the app
share two cores; the harness reads a handful of fields, so it asks the API
server for JSON and keeps dicts. The client still does what it is best at: the
kubeconfig (certificates, tokens, exec plugins), TLS, connection pooling, and
exec over WebSocket. Every failure is a ``KubeError`` with one line.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

from loadtest.stack.base import StackError


class KubeError(StackError):
    """The API refused or could not be reached; ``status`` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _api_error(exc, what: str) -> KubeError:
    status = int(getattr(exc, "status", 0) or 0)
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        message = None
    return KubeError(f"{what}: {message or getattr(exc, 'reason', None) or exc}", status)


def _status_error(status: int, data: bytes, what: str) -> KubeError:
    try:
        message = json.loads(data).get("message")
    except (ValueError, AttributeError):
        message = None
    return KubeError(f"{what}: {message or f'HTTP {status}'}", status)


class Kube:
    """One cluster, as the admin of a kubeconfig sees it."""

    def __init__(self, kubeconfig: Path, timeout: float = 10.0) -> None:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        self.kubeconfig = Path(kubeconfig)
        self.timeout = timeout
        try:
            self.client = config.new_client_from_config(str(self.kubeconfig))
            # exec swaps the client's transport while it runs: a client of its own
            self._exec_client = config.new_client_from_config(str(self.kubeconfig))
        except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KubeError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({text})") \
                from None
        self.client.configuration.retries = 1
        self._exec_lock = threading.Lock()

    @property
    def server(self) -> str:
        return str(self.client.configuration.host)

    # -- plain requests ------------------------------------------------------------------

    def request(self, method: str, path: str, query: dict | None = None,
                body: dict | list | None = None, timeout: float | None = None,
                content_type: str = "application/json") -> dict:
        response = self._call(method, path, query, body, timeout or self.timeout, content_type)
        data = response.read()
        if response.status >= 400:
            raise _status_error(response.status, data, f"{method} {path}")
        return json.loads(data) if data else {}

    def _call(self, method: str, path: str, query: dict | None, body, timeout,
              content_type: str = "application/json"):
        """One request through the client's pool; the response is not read yet."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            method, url, headers, body, post = self.client.param_serialize(
                method, path, query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"])
            return self.client.call_api(method, url, header_params=headers, body=body,
                                        post_params=post, _request_timeout=timeout)
        except ApiException as exc:
            raise _api_error(exc, f"{method} {path}") from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"the cluster at {self.server} does not answer "
                            f"({_reason(exc)})") from None

    def get(self, path: str, **query) -> dict:
        return self.request("GET", path, query)

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body=body)

    def patch(self, path: str, body: dict) -> dict:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def delete(self, path: str, **query) -> dict:
        try:
            return self.request("DELETE", path, query)
        except KubeError as exc:
            if exc.status == 404:
                return {}
            raise

    def version(self, timeout: float = 5.0) -> str:
        return str(self.request("GET", "/version", timeout=timeout).get("gitVersion", "?"))

    # -- watches ---------------------------------------------------------------------------

    def watch(self, path: str, resource_version: str, seconds: int = 10,
              **query) -> Iterator[dict]:
        """Events ({type, object}) after ``resource_version``, for about ``seconds``."""
        from kubernetes.watch.watch import iter_resp_lines

        params = {**query, "watch": "true", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(seconds)}
        response = self._call("GET", path, params, None, (self.timeout, seconds + 10))
        if response.status >= 400:
            raise _status_error(response.status, response.read(), f"watch {path}")
        stream = response.response
        try:
            for line in iter_resp_lines(stream):
                if line:
                    yield json.loads(line)
        finally:
            stream.release_conn()

    # -- exec ----------------------------------------------------------------------------

    def exec(self, namespace: str, pod: str, container: str | None, command: list[str],
             timeout: float = 20.0) -> tuple[int, str]:
        """Run ``command`` in a container: (exit code, stdout and stderr)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        core = client.CoreV1Api(self._exec_client)
        with self._exec_lock:
            try:
                ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace,
                            command=command, container=container, stdin=False, stdout=True,
                            stderr=True, tty=False, _preload_content=False)
                ws.run_forever(timeout=timeout)
                code = ws.returncode if not ws.is_open() else None  # reads the status channel
                output = ws.read_all()  # then stdout and stderr (this empties every channel)
                ws.close()
            except ApiException as exc:
                raise _api_error(exc, f"exec in {pod}") from None
            except Exception as exc:  # noqa: BLE001 - websocket's own errors: one line
                raise KubeError(f"exec in {pod}: {_reason(exc)}") from None
        return (code if code is not None else -1), output

    def close(self) -> None:
        for api in (self.client, self._exec_client):
            try:
                api.rest_client.pool_manager.clear()
            except Exception:  # noqa: BLE001 - closing: nothing to report
                pass


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason or exc).strip()
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text.splitlines()[0][:160] if text else type(exc).__name__


__all__ = ["Kube", "KubeError"]
