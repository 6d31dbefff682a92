"""The swarm a run joins, or makes and leaves: membership and the networks it owns.

The harness uses the engine's swarm if the engine manages one; if the engine is in
none, it starts a single-node swarm listening on 127.0.0.1 only, and leaves it at
the end, with the ``docker_gwbridge`` network Swarm makes and ``swarm leave`` does not
remove. Networks are removed by name, retrying while endpoints linger, and waited
for until the engine no longer lists them.
"""

from __future__ import annotations

import logging
import time

import docker

from loadtest.stack.base import StackError, port_is_free

log = logging.getLogger("scalecheck")
GWBRIDGE = "docker_gwbridge"
SWARM_PORT = 2377


def explain(exc: Exception) -> str:
    """The first line of what the engine said."""
    text = getattr(exc, "explanation", None) or str(exc)
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


class SwarmNode:
    def __init__(self, client) -> None:
        self.client = client
        self.created = False          # this run started the swarm: it leaves it
        self.node_id = ""
        self._gwbridge_existed = True

    def info(self) -> dict:
        return self.client.info().get("Swarm") or {}

    def check(self) -> None:
        """One line if this engine cannot take part (a worker, a broken swarm, a busy port)."""
        swarm = self.info()
        state = swarm.get("LocalNodeState")
        if state == "active" and not swarm.get("ControlAvailable"):
            raise StackError("this Docker engine is a swarm worker: point DOCKER_HOST at a "
                             "manager of the swarm")
        if state not in ("active", "inactive"):
            raise StackError(f"this Docker engine's swarm is {state!r}"
                             f"{': ' + swarm['Error'] if swarm.get('Error') else ''}; "
                             "fix it (docker swarm leave --force) or use --stack compose")
        if state == "inactive" and not port_is_free(SWARM_PORT):
            raise StackError(f"port {SWARM_PORT} on 127.0.0.1 is busy; a single-node swarm "
                             "needs it for its manager")

    def join(self) -> None:
        """Use the engine's swarm, or start a single-node one that only listens on 127.0.0.1."""
        if self.info().get("LocalNodeState") == "inactive":
            self._gwbridge_existed = bool(self.network_ids(GWBRIDGE))
            self.created = True  # before the call: leave() must run even if we are cut
            try:
                self.client.swarm.init(advertise_addr="127.0.0.1",
                                       listen_addr=f"127.0.0.1:{SWARM_PORT}")
            except docker.errors.APIError as exc:
                self.created = False
                raise StackError(f"cannot start a single-node swarm: {explain(exc)}") from None
            log.info("scalecheck: started a single-node swarm on 127.0.0.1 (left again at the end)")
        self.node_id = self.info().get("NodeID", "")

    def leave(self) -> None:
        if not self.created:
            return
        self.client.swarm.leave(force=True)
        self.created = False
        if self._gwbridge_existed:
            return
        # Swarm made docker_gwbridge and leaving does not remove it; ours to remove once
        # nothing is attached.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ids = self.network_ids(GWBRIDGE)
            if not ids:
                return
            if not self.client.api.inspect_network(ids[0]).get("Containers"):
                self.remove_network(GWBRIDGE)
                return
            time.sleep(0.25)
        log.warning("scalecheck: %s still has endpoints; left in place", GWBRIDGE)

    def create_network(self, name: str, labels: dict[str, str]) -> None:
        """An attachable overlay network: a plain container (Traefik) can join it."""
        try:
            self.client.networks.create(name, driver="overlay", attachable=True, labels=labels)
        except docker.errors.APIError as exc:
            raise StackError(f"cannot create the overlay network {name}: "
                             f"{explain(exc)}") from None

    def network_ids(self, name: str) -> list[str]:
        return [n["Id"] for n in self.client.api.networks(names=[name]) if n["Name"] == name]

    def remove_network(self, name: str, owner: tuple[str, str] | None = None) -> None:
        """Remove a network by name (only if its ``owner`` label matches, when given),
        retrying while endpoints linger, until the engine no longer lists it (bounded)."""
        deadline = time.monotonic() + 30
        while ids := self.network_ids(name):
            try:
                for net_id in ids:
                    network = self.client.networks.get(net_id)
                    if owner and network.attrs.get("Labels", {}).get(owner[0]) != owner[1]:
                        return  # not ours after all: leave it alone
                    network.remove()
            except docker.errors.NotFound:
                pass  # gone meanwhile; the listing will say so
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise StackError(f"network {name} still listed after 30 s")
            time.sleep(0.25)
