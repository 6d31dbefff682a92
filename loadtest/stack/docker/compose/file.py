"""The user's Compose file, as the harness runs it: their services, plus its balancer.

The user's file is never touched. Compose resolves it first (``config``:
variables, ``extends``, ``env_file``, relative paths made absolute), then this
module writes the harness's copy into the run directory, changed only where the
harness must change it:

- the scaled service loses its host ``ports`` (a second replica could not bind
  the same host port) and its ``container_name`` is refused (Compose cannot
  scale a service whose containers all have one name);
- the harness's balancer joins the scaled service's networks, published on
  127.0.0.1 only: Traefik with its Docker provider (the service gets the labels
  that name it to Traefik, on its container port, health-checked on the health
  path), or HAProxy, which the harness feeds through its runtime API;
- every other service stays as written (their database, their Redis under any
  name, their environment).

Why a resolved copy rather than an override next to the user's file: Compose v1
(Debian's docker-compose 1.29) merges ``ports`` of an override *into* the
original's, so an override cannot take a port away; v2 can (``!reset``), v1
cannot. A resolved copy works with both, and the user's file stays as it is.

Pure functions of the resolved configuration: tested without Docker.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from loadtest.contract.wire import ACCESS_LOG_FIELDS, REQUEST_ID_HEADER
from loadtest.stack.docker import socketproxy

BALANCER_SERVICE = "scalecheck-balancer"
TRAEFIK_ROUTER = "scalecheck"
#: Where the balancer container writes what the harness reads (Traefik's access log).
BALANCER_LOG_DIR = "/scalecheck/logs"
PROXY_SERVICE = "scalecheck-docker-api"   # Traefik's read-only way to the engine
PROXY_VOLUME = "scalecheck-docker-api"
ADMIN_DIR = "/scalecheck/admin"            # HAProxy's admin socket, in a private host dir
ADMIN_SOCKET = f"{ADMIN_DIR}/admin.sock"


class ComposeFileError(Exception):
    """The Compose file cannot be run as asked; the message is one line."""


@dataclass(frozen=True)
class ScaledService:
    """What the harness learned of the service it scales."""

    name: str
    port: int                    # the container port the balancer sends requests to
    port_source: str             # where that port came from
    networks: list[str]          # its networks, as named in the file
    has_healthcheck: bool        # a Docker healthcheck of its own (the file's or image's)
    image: str | None = None
    removed_ports: list[str] = field(default_factory=list)


def services(config: dict) -> dict:
    return config.get("services") or {}


def scaled_service(config: dict, name: str, app_port: int | None = None,
                   image_ports: list[int] | None = None,
                   image_healthcheck: bool = False) -> ScaledService:
    """Find the service to scale and the port its replicas listen on: ``--app-port``, else
    the service's ``expose``, else the container side of its ``ports``, else the image's
    ``EXPOSE``. One line (ComposeFileError) when it cannot be scaled or has no port."""
    found = services(config)
    if name not in found:
        raise ComposeFileError(f"service {name!r} is not in the Compose file (it has: "
                               f"{', '.join(sorted(found)) or 'no service'})")
    svc = found[name] or {}
    if svc.get("container_name"):
        raise ComposeFileError(f"service {name!r} sets container_name "
                               f"({svc['container_name']}): Compose cannot run two containers "
                               "of one name, so it cannot be scaled; remove container_name")
    port, source = _port(svc, app_port, image_ports or [])
    if port is None:
        raise ComposeFileError(f"service {name!r}: no container port found (no expose, no "
                               "ports, no EXPOSE in its image); give it with --app-port")
    health = svc.get("healthcheck")
    has_health = bool(health) and not health.get("disable") and \
        health.get("test") not in (["NONE"], "NONE")
    if health is None:
        has_health = image_healthcheck
    return ScaledService(name, port, source, _networks(svc), has_health, svc.get("image"),
                         [_port_text(p) for p in svc.get("ports") or []])


def _port(svc: dict, app_port: int | None, image_ports: list[int]) -> tuple[int | None, str]:
    if app_port:
        return app_port, "--app-port"
    for entry in svc.get("expose") or []:
        number = _leading_int(str(entry))
        if number:
            return number, "expose"
    for entry in svc.get("ports") or []:
        number = entry.get("target") if isinstance(entry, dict) else _container_side(str(entry))
        if number:
            return int(number), "ports"
    if image_ports:
        return sorted(image_ports)[0], "the image's EXPOSE"
    return None, ""


def _container_side(text: str) -> int | None:
    """``127.0.0.1:4000:8000/tcp`` -> 8000; ``5000`` -> 5000; ``8000-8001`` -> 8000."""
    text = text.split("/", 1)[0]
    return _leading_int(text.rsplit(":", 1)[-1])


def _leading_int(text: str) -> int | None:
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else None


def _port_text(entry) -> str:
    if isinstance(entry, dict):
        host = f"{entry.get('host_ip')}:" if entry.get("host_ip") else ""
        return f"{host}{entry.get('published', '')}:{entry.get('target')}"
    return str(entry)


def _networks(svc: dict) -> list[str]:
    nets = svc.get("networks")
    if not nets:
        return ["default"]  # Compose puts a service without networks on <project>_default
    return list(nets) if isinstance(nets, dict) else [str(n) for n in nets]


@dataclass(frozen=True)
class BalancerSpec:
    """How to run the harness's balancer beside the user's services."""

    kind: str                    # traefik | haproxy
    image: str
    port: int                    # on 127.0.0.1
    api_port: int                # on 127.0.0.1: Traefik's API, HAProxy's stats page
    health_path: str | None = "/health"
    project: str = ""
    admin_dir: str | None = None       # host dir (mode 0700) of HAProxy's admin socket
    haproxy_cfg: str | None = None     # host path of the HAProxy configuration
    log_dir: str | None = None         # host directory for the balancer's access log
    docker_socket: str = "/var/run/docker.sock"
    proxy_image: str | None = None     # an image with haproxy: Traefik's API proxy
    proxy_cfg: str | None = None       # host path of that proxy's configuration


def harness_config(config: dict, scaled: ScaledService, balancer: BalancerSpec,
                   limits=None) -> dict:
    """The configuration the harness runs: a copy of ``config`` with its balancer added.
    ``limits`` (``stack.limits.Limits``): each replica's CPU and memory, as Docker's own
    limits (``deploy.resources.limits``: Compose v2 applies them, v1 with
    ``--compatibility``)."""
    out = copy.deepcopy(config)
    svc = out["services"][scaled.name]
    svc.pop("ports", None)
    if limits is not None and limits.limited:
        wanted = {}
        if limits.cpus is not None:
            wanted["cpus"] = f"{limits.cpus:g}"
        if limits.memory_bytes is not None:
            wanted["memory"] = str(limits.memory_bytes)
        resources = svc.setdefault("deploy", {}).setdefault("resources", {})
        resources["limits"] = {**(resources.get("limits") or {}), **wanted}
    if balancer.kind == "traefik":
        labels = {k: v for k, v in _labels(svc).items() if not k.startswith("traefik.")}
        labels.update(traefik_labels(scaled.port, balancer.health_path))
        svc["labels"] = labels
    if BALANCER_SERVICE in out["services"]:
        raise ComposeFileError(f"the Compose file already has a service named "
                               f"{BALANCER_SERVICE}, the name the harness gives its balancer")
    out["services"][BALANCER_SERVICE] = balancer_service(scaled, balancer)
    if balancer.kind == "traefik":
        if PROXY_SERVICE in out["services"]:
            raise ComposeFileError(f"the Compose file already has a service named "
                                   f"{PROXY_SERVICE}, a name the harness uses")
        out["services"][PROXY_SERVICE] = docker_api_proxy(balancer)
        out.setdefault("volumes", {})[PROXY_VOLUME] = None
    if scaled.networks == ["default"]:
        out.setdefault("networks", {}).setdefault("default", None)
    return out


def _labels(svc: dict) -> dict:
    labels = svc.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in labels)
    return dict(labels)


def traefik_labels(port: int, health_path: str | None) -> dict[str, str]:
    """The labels that name the scaled service to Traefik. Without a health path, Traefik
    relies on Docker's healthcheck (its Docker provider routes only to healthy containers)."""
    prefix = f"traefik.http.services.{TRAEFIK_ROUTER}.loadbalancer"
    labels = {
        "traefik.enable": "true",
        f"traefik.http.routers.{TRAEFIK_ROUTER}.rule": "PathPrefix(`/`)",
        f"traefik.http.routers.{TRAEFIK_ROUTER}.entrypoints": "web",
        f"traefik.http.routers.{TRAEFIK_ROUTER}.service": TRAEFIK_ROUTER,
        f"{prefix}.server.port": str(port),
    }
    if health_path:
        labels.update({f"{prefix}.healthcheck.path": health_path,
                       f"{prefix}.healthcheck.interval": "1s",
                       f"{prefix}.healthcheck.timeout": "1s"})
    return labels


def traefik_access_log_args() -> list[str]:
    """Traefik in a container logs, for each request, its id and the server that answered
    (read after the run by ``loadtest.harness.names``) into the bind-mounted log directory, and
    nothing else (``wire.ACCESS_LOG_FIELDS``)."""
    return ["--accesslog=true", "--accesslog.format=json",
            f"--accesslog.filepath={BALANCER_LOG_DIR}/traefik-access.log",
            "--accesslog.bufferingsize=0",
            "--accesslog.fields.defaultmode=drop",
            *(f"--accesslog.fields.names.{name}=keep" for name in ACCESS_LOG_FIELDS),
            "--accesslog.fields.headers.defaultmode=drop",
            f"--accesslog.fields.headers.names.{REQUEST_ID_HEADER}=keep"]


def balancer_service(scaled: ScaledService, spec: BalancerSpec) -> dict:
    svc: dict = {"image": spec.image, "networks": list(scaled.networks),
                 "labels": {"scalecheck.role": "balancer"}}
    if spec.kind == "traefik":
        project = spec.project
        svc["command"] = [
            "--providers.docker=true",
            "--providers.docker.exposedbydefault=false",
            # Only this project's containers: another stack's labels must not leak in.
            f"--providers.docker.constraints=Label(`com.docker.compose.project`,`{project}`)",
            "--providers.providersThrottleDuration=200ms",
            "--entrypoints.web.address=:80",
            "--entrypoints.traefik.address=:8080",
            "--api.dashboard=true", "--api.insecure=true", "--ping=true",
            *traefik_access_log_args(),
            "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
        ]
        if len(scaled.networks) > 1:  # which network Traefik reaches the replicas on
            svc["command"].append(f"--providers.docker.network={project}_{scaled.networks[0]}")
        # The engine's API through the read-only proxy, never the socket itself.
        svc["command"].append(f"--providers.docker.endpoint={socketproxy.ENDPOINT}")
        svc["ports"] = [f"127.0.0.1:{spec.port}:80", f"127.0.0.1:{spec.api_port}:8080"]
        svc["volumes"] = [f"{PROXY_VOLUME}:{socketproxy.SOCKET_DIR}"]
        svc["depends_on"] = [PROXY_SERVICE]
        if spec.log_dir:
            svc["volumes"].append(f"{spec.log_dir}:{BALANCER_LOG_DIR}")
    elif spec.kind == "haproxy":
        svc["command"] = ["haproxy", "-db", "-f", "/scalecheck/haproxy.cfg"]
        # The runtime API is a Unix socket in a host directory of mode 0700: the harness
        # (root) reaches it; no container on the network does, nor any other local user.
        svc["user"] = "0:0"
        svc["ports"] = [f"127.0.0.1:{spec.port}:80", f"127.0.0.1:{spec.api_port}:8404"]
        svc["volumes"] = [f"{spec.haproxy_cfg}:/scalecheck/haproxy.cfg:ro",
                          f"{spec.admin_dir}:{ADMIN_DIR}"]
    else:
        raise ComposeFileError(f"unknown balancer {spec.kind!r}: choose traefik or haproxy")
    return svc


def docker_api_proxy(spec: BalancerSpec) -> dict:
    """The service that gives Traefik read-only access to the engine (``socketproxy``)."""
    return {"image": spec.proxy_image, "command": list(socketproxy.COMMAND), "user": "0:0",
            "network_mode": "none", "labels": {"scalecheck.role": "docker-api-proxy"},
            "volumes": [f"{spec.docker_socket}:/var/run/docker.sock",
                        f"{spec.proxy_cfg}:{socketproxy.CONFIG_IN_CONTAINER}:ro",
                        f"{PROXY_VOLUME}:{socketproxy.SOCKET_DIR}"]}


def counter_location(text: str) -> tuple[str, str, str]:
    """``redis:SERVICE:KEY`` (or ``redis:KEY``, in the service ``redis``) -> ("redis",
    service, key); one line otherwise."""
    parts = str(text).split(":")
    if len(parts) == 2:
        parts = [parts[0], "redis", parts[1]]
    if len(parts) != 3 or parts[0] != "redis" or not parts[1] or not parts[2]:
        raise ComposeFileError(f"--counter-read {text!r}: expected redis:SERVICE:KEY (e.g. "
                               "redis:redis:counter)")
    return parts[0], parts[1], parts[2]


def swarm_traefik_args(network: str, stack_name: str, access_log: bool) -> list[str]:
    """Traefik's command line in front of a Swarm stack: its swarm provider, limited to this
    stack's services (another stack's ``hello`` router would clash with ours)."""
    return [
        "--providers.swarm=true",
        f"--providers.swarm.endpoint={socketproxy.ENDPOINT}",
        "--providers.swarm.exposedbydefault=false",
        f"--providers.swarm.network={network}",
        # The swarm provider polls (15 s by default); it has no event watch.
        "--providers.swarm.refreshSeconds=1s",
        f"--providers.swarm.constraints=Label(`com.docker.stack.namespace`,`{stack_name}`)",
        "--providers.providersThrottleDuration=200ms",
        # A killed task's address gives no RST on the overlay: fail in 1 s, not 30 s.
        "--serversTransport.forwardingTimeouts.dialTimeout=1s",
        "--entrypoints.web.address=:80",
        "--entrypoints.traefik.address=:8080",
        "--api.dashboard=true", "--api.insecure=true", "--ping=true",
        "--log.level=INFO",
        *(traefik_access_log_args() if access_log else []),
        "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
    ]
