"""What a cluster left on the host: a snapshot before start, a comparison after stop.

Tests assert the list is empty after ``stop()``; the cluster also checks it and
says what remains. Each entry is one readable line (``mount /path``,
``iptables nat KUBE-SERVICES``...), so a failure names the thing to look at.
A thing that was there before the snapshot (another cluster's, Docker's) is
never reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loadtest.stack.kubernetes import network, sweep
from loadtest.stack.kubernetes.layout import HOST_DIRS, Layout


@dataclass(frozen=True)
class HostState:
    """The cluster-related things present on the host at one moment."""

    items: frozenset[str]


def _processes(roots: list[Path]) -> set[str]:
    found = set()
    for pid in sweep.cluster_pids(roots):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmd.strip():
            found.add(f"process {pid} {cmd.strip()[:160]}")
    return found


def _netns(layout: Layout) -> set[str]:
    found = set()
    for directory in (Path("/run/netns"), layout.containerd_state / "netns"):
        if directory.is_dir():
            found.update(f"netns {p}" for p in directory.iterdir())
    return found


def _interfaces() -> set[str]:
    return {f"interface {name}" for name in network.our_links()}


def _chains() -> set[str]:
    found = set()
    for family in ("4", "6"):
        for table, chains in network.iptables_chains(family).items():
            found.update(f"ip{'6' if family == '6' else ''}tables {table} {c}" for c in chains)
    found.update(f"nft table {t}" for t in network.all_nft_tables())
    return found


def current(layout: Layout) -> HostState:
    """Everything cluster-related that exists now (processes, mounts, interfaces,
    network namespaces, cgroups, iptables/nftables chains, stray files)."""
    roots = layout.owned_roots()
    items = (_processes(roots)
             | {f"mount {m}" for m in sweep.mounts_under(roots)}
             | _interfaces() | _netns(layout) | _chains()
             | {f"cgroup {d}" for d in sweep.cgroup_dirs()}
             | {f"file {f}" for f in sweep.stray_files(layout.pod_logs)}
             | {f"directory {d}" for d in HOST_DIRS if d.exists()}
             | {f"stale shim socket {p}" for p in sweep.stale_shim_sockets()})
    return HostState(frozenset(items))


def snapshot(layout: Layout) -> HostState:
    """The state before a start, to compare with after its stop."""
    return current(layout)


def leftovers(before: HostState, layout: Layout) -> list[str]:
    """What exists now and did not before: empty after a clean stop."""
    return sorted(current(layout).items - before.items)
