"""The Docker engine, as both Docker backends use it: client, CLIs, images, containers.

Everything here is what Compose and Swarm do the same way: reach the engine
(one line when it cannot be reached), run a CLI (``docker compose``,
``docker-compose``, ``docker stack``) with a bounded time and a one-line
error, pick local stand-ins for images no registry can give here, and read or
act on containers (their address on a network, their CPU time, ``redis-cli``
inside them, unpausing what a fault left frozen).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import docker

from loadtest.stack.base import StackError

#: Images the Compose and stack files name by default, and the stand-ins `make
#: docker-images` builds from this machine's own packages (no registry here).
STAND_INS = {"TRAEFIK_IMAGE": ("traefik:v3.7", "scalecheck/traefik:latest"),
             "REDIS_IMAGE": ("redis:7-alpine", "scalecheck/base:bookworm"),
             "HAPROXY_IMAGE": ("haproxy:2.6", "scalecheck/base:bookworm")}


def docker_client():
    """A Docker SDK client, or a one-line reason why there is none."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        text = str(exc)
        if "Permission denied" in text:
            raise StackError("permission denied on the Docker socket: run as root or join the "
                             "docker group") from None
        if "FileNotFoundError" in text or "No such file" in text or "Connection refused" in text:
            raise StackError("the Docker daemon is not running (start dockerd, or use "
                             "--stack local)") from None
        raise StackError(f"cannot reach Docker: {text.splitlines()[0][:160]}") from None


def compose_command() -> list[str]:
    """``docker compose`` (v2) if the plugin is there, else ``docker-compose`` (v1)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackError("neither `docker compose` nor `docker-compose` found: install Docker "
                     "Compose (Debian: apt-get install docker-compose)")


def run_cli(argv: list[str], env: dict[str, str], what: str, cwd: str | None = None,
            check: bool = True, merge: bool = False, timeout: float = 600) -> str:
    """Run a CLI, bounded in time; a failure is one line naming ``what`` and its last
    line of output. ``merge``: stderr into the returned text (logs)."""
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, text=True, timeout=timeout,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merge else subprocess.PIPE)
    except subprocess.TimeoutExpired:
        raise StackError(f"`{what}` took over {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise StackError(f"`{what}` failed: {err[-1] if err else 'exit ' + str(proc.returncode)}")
    return proc.stdout or ""


def socket_path(env: dict[str, str]) -> str:
    """The engine's socket as the engine's host sees it, for Traefik to mount."""
    host = env.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


def has_image(client, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.DockerException:
        return False


def image_env(client, env: dict[str, str], wanted: dict[str, tuple[str, str]] = STAND_INS
              ) -> dict[str, str]:
    """Images to use: the user's, else the default if present, else a local stand-in if one
    was built (no registry here), else the default (pulled)."""
    out = {}
    for var, (default, stand_in) in wanted.items():
        if env.get(var):
            continue
        if not has_image(client, default) and has_image(client, stand_in):
            out[var] = stand_in
    return out


def image_facts(client, name: str | None) -> tuple[list[int], bool]:
    """(the TCP ports an image EXPOSEs, whether it has a HEALTHCHECK); nothing if unknown."""
    if not name:
        return [], False
    try:
        config = client.images.get(name).attrs.get("Config") or {}
    except docker.errors.DockerException:
        return [], False
    ports = [int(p.split("/")[0]) for p in (config.get("ExposedPorts") or {})
             if p.endswith("/tcp") and p.split("/")[0].isdigit()]
    test = (config.get("Healthcheck") or {}).get("Test") or []
    return ports, bool(test) and test != ["NONE"]


def container_ip(container, network: str | None = None) -> str:
    """The container's address on ``network`` (a name Docker knows), else its first one."""
    nets = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    if network and nets.get(network, {}).get("IPAddress"):
        return nets[network]["IPAddress"]
    return next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "")


def container_cpu_seconds(container) -> float | None:
    """CPU seconds a container used so far, or None if it just went."""
    try:
        stats = container.stats(stream=False, one_shot=True)
        return stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    except Exception:  # noqa: BLE001 - a container that just went: no sample
        return None


def health_status(container) -> str | None:
    """Docker's health of a container: starting, healthy, unhealthy; None without a check."""
    return (container.attrs.get("State", {}).get("Health") or {}).get("Status")


def unpause_all(containers) -> None:
    """A fault may have left a container frozen: it must hear SIGTERM at the end."""
    for container in containers:
        try:
            if container.status == "paused":
                container.unpause()
        except Exception:  # noqa: BLE001 - teardown goes on regardless
            pass


# -- Redis inside a container ------------------------------------------------------------

def redis_cli(container, *args: str) -> tuple[int, str]:
    code, output = container.exec_run(["redis-cli", *args])
    return code, output.decode(errors="replace").strip()


def read_redis_counter(container, key: str) -> int:
    """The counter's value in a Redis container (0 when the key is absent)."""
    code, text = redis_cli(container, "GET", key)
    if code != 0:
        raise StackError(f"cannot read the counter in the Redis container: {text[:120]!r}")
    return int(text) if text.lstrip("-").isdigit() else 0


def redis_over_network(client, image: str, network: str, host: str, key: str,
                       labels: dict[str, str]) -> int:
    """The counter of a Redis no ``docker exec`` reaches (on another node): asked from a
    throw-away container on the network, on this engine."""
    try:
        output = client.containers.run(image, ["redis-cli", "-h", host, "GET", key],
                                       network=network, remove=True, labels=labels)
    except docker.errors.DockerException as exc:
        text = getattr(exc, "explanation", None) or str(exc)
        raise StackError(f"cannot read the counter over {network}: "
                         f"{str(text).strip().splitlines()[0][:200]}") from None
    text = output.decode(errors="replace").strip()
    return int(text) if text.lstrip("-").isdigit() else 0


def freeze_store_for_restart(redis, persist: bool, read_counter: Callable[[], int | None]
                             ) -> tuple[float, int | None]:
    """Pause Redis's writes, read the counter, then save it or delete its dump file.

    Writes are paused first, so the value read is the old instance's last one: the
    analysis splits the counter's history there when the restart loses it.
    Returns (when writes were paused, the counter then)."""
    code, out = redis_cli(redis, "CLIENT", "PAUSE", "10000", "WRITE")
    if code != 0:
        raise StackError(f"cannot pause Redis before its restart: {out[:120]!r}")
    paused_at = time.time()
    before = read_counter()
    if persist:
        code, out = redis_cli(redis, "SAVE")
        if code != 0:
            raise StackError(f"Redis would not save before its restart: {out[:120]!r}")
    else:
        redis.exec_run(["sh", "-c", "rm -f \"$(redis-cli CONFIG GET dir | tail -n1)"
                                    "/dump.rdb\""])
    return paused_at, before


def wait_redis_back(current: Callable[[], object | None], timeout: float = 60.0,
                    old_id: str | None = None) -> None:
    """Wait, bounded, until the store's container (``current()``; a new one when
    ``old_id`` is given) answers PING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container = current()
        if container is not None and (old_id is None or container.id != old_id) and \
                redis_cli(container, "PING")[0] == 0:
            return
        time.sleep(0.2)
    raise StackError("Redis did not come back after its restart")


def store_restart_result(paused_at: float, before: int | None, persist: bool,
                         read_after: int | None) -> dict:
    """The restart-redis fault's figures, the same for every container backend."""
    return {"paused_at": paused_at, "counter_before": before,
            "counter_after": before if persist else 0,
            "counter_read_after": read_after, "persist": persist}
