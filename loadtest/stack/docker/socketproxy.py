"""Traefik's Docker and Swarm providers read the engine's API; they never need to write.

Mounting ``/var/run/docker.sock`` into Traefik, even ``:ro``, is full control of the
engine (``:ro`` applies to the file, not to what is said through it): a compromised or
misconfigured Traefik could create volumes, start privileged containers, read any
secret. So Traefik gets the API through a proxy that lets through only the reads its
providers make (``GET``/``HEAD`` of version, info, events, containers, networks,
services, tasks, nodes) and answers 403 to everything else. The proxy is HAProxy (the
project already has its image), listening on a Unix socket in a volume that only the
proxy and Traefik mount: nothing on the network can reach it.

What still goes through: reads, including containers' configuration (their environment
too, which Traefik's provider reads for labels); that is the least the provider needs.
"""

from __future__ import annotations

from pathlib import Path

#: Where the proxy's socket lives inside both containers (a volume of their own).
SOCKET_DIR = "/scalecheck-docker-api"
ENDPOINT = f"unix://{SOCKET_DIR}/docker.sock"
#: The reads Traefik's docker and swarm providers make, with or without an API version.
ALLOWED_PATHS = (r"^(/v[0-9.]+)?/(_ping|version|info|events|containers/json"
                 r"|containers/[A-Za-z0-9_.-]+/json|networks|networks/[A-Za-z0-9_.-]+"
                 r"|services|services/[A-Za-z0-9_.-]+|tasks|tasks/[A-Za-z0-9_.-]+"
                 r"|nodes|nodes/[A-Za-z0-9_.-]+)$")

CONFIG = f"""global
    maxconn 256

defaults
    mode http
    timeout connect 5s
    # the event stream stays open for the whole run
    timeout client 1d
    timeout server 1d

frontend docker_api
    bind unix@{SOCKET_DIR}/docker.sock mode 666
    acl reads method GET HEAD
    acl known path_reg {ALLOWED_PATHS}
    http-request deny deny_status 403 unless reads known
    default_backend engine

backend engine
    server engine /var/run/docker.sock
"""


CONFIG_IN_CONTAINER = "/scalecheck/docker-api-proxy.cfg"
COMMAND = ["haproxy", "-db", "-f", CONFIG_IN_CONTAINER]


def write_config(workdir: Path) -> Path:
    """The proxy's configuration, on the host, to mount read-only into its container."""
    path = workdir / "docker-api-proxy.cfg"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG)
    return path
