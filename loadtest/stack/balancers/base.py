"""The embedded stack's balancer: one interface, two implementations (Traefik, HAProxy).

The local stack starts replicas itself and tells the balancer about them;
the balancer never discovers anything on its own. Each verb returns once the
balancer has taken the change in (or raises ``StackError``). The scale-down
protocol is the same for both: ``begin_removal`` (no new requests go there),
``wait_idle`` (what is in flight finishes), ``finish_removal`` (gone from the
configuration), then the stack stops the replica.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from loadtest.stack.base import BalancerRow


@dataclass
class BalancerPaths:
    port: int            # the entry point on 127.0.0.1
    api_port: int        # the API / dashboard / stats on 127.0.0.1
    workdir: Path        # configuration files
    log_dir: Path
    health_path: str | None = "/health"  # where the balancer checks a replica (None: nothing)


class LocalBalancer(ABC):
    name: str = "balancer"
    binary: str = ""
    package: str = ""  # where the binary comes from, for the error message

    def __init__(self, paths: BalancerPaths, health_interval_ms: int = 200) -> None:
        self.paths = paths
        self.health_interval_ms = health_interval_ms
        self.process: subprocess.Popen | None = None

    @abstractmethod
    def start(self) -> None:
        """Start the balancer with no server, and wait until its API answers."""

    @abstractmethod
    def add(self, name: str, address: str) -> None:
        """Put a healthy replica in rotation."""

    @abstractmethod
    def begin_removal(self, names: set[str]) -> None:
        """Stop sending new requests to these replicas; return once that holds."""

    @abstractmethod
    def wait_idle(self, names: set[str], timeout: float) -> None:
        """Wait, bounded, until nothing is in flight to these replicas."""

    @abstractmethod
    def finish_removal(self, names: set[str]) -> None:
        """Take these replicas out of the configuration entirely."""

    @abstractmethod
    def forget(self, name: str) -> None:
        """A replica died: take it out at once, without waiting for anything."""

    @abstractmethod
    def routes_exactly(self, names: set[str], may_be_down: set[str] = frozenset()) -> bool:
        """True when the balancer has exactly these replicas, all healthy but those in
        ``may_be_down`` (paused by a fault: its health check may have taken them out)."""

    @abstractmethod
    def view(self) -> list[BalancerRow]: ...

    @abstractmethod
    def version(self) -> str | None: ...

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @abstractmethod
    def stop(self) -> None: ...

    def close(self) -> None:
        """Stopped for good (not to be restarted): what it kept beside its process goes."""
        self.stop()

    def restart(self) -> None:
        """Stop and start again with the same replicas (a fault)."""
        servers = self.current_servers()
        self.stop()
        self.start()
        for name, address in servers.items():
            self.add(name, address)

    @abstractmethod
    def current_servers(self) -> dict[str, str]:
        """name -> address of the replicas in the configuration."""
