"""The cluster's network on the host: its node address, a guard, and the sweeps.

The node IP lives on an interface the cluster creates (a bridge with no ports:
these machines' kernel has no ``dummy`` driver, and a port-less bridge behaves
the same for local addresses), so that every
component that must be reachable from pods (the apiserver, the kubelet,
metrics-server) listens on an address of the cluster's own and never on the
machine's real interfaces. Linux accepts a packet for any local address on any
interface, so a guard chain in the raw table drops packets for the node IP, the
pod network and the service network that arrive from anywhere but loopback and
the pods' bridge: nothing of the cluster is reachable from outside the machine.
The same chain drops what pods send to anything but the cluster's own
addresses, so no pod sends a packet off the machine either.

The sweeps remove what kube-proxy, the kubelet and the CNI plugins leave in the
kernel (chains named ``KUBE-*``, ``CNI-*``, kube-proxy's nftables tables, the
bridge and its veths): chain names are machine-wide, hence one cluster at a time.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from loadtest.stack.kubernetes.layout import BRIDGE, DUMMY, GUARD_CHAIN, Settings

OUR_CHAIN = re.compile(r"^(KUBE-|CNI-|" + re.escape(GUARD_CHAIN) + r")")
NFT_TABLES = ("kube-proxy",)
# sysctls the cluster needs (forwarding for pod -> service -> pod, bridged traffic
# through iptables for kube-proxy's DNAT on the same bridge); restored at stop.
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}


def _run(argv: list[str], check: bool = True, timeout: float = 30,
         stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {result.stderr.strip()[-300:]}")
    return result


def links() -> list[dict]:
    """Every network interface, as ``ip -j -d link`` describes it."""
    return json.loads(_run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")


def link_kind(link: dict) -> str:
    return (link.get("linkinfo") or {}).get("info_kind", "")


def create_node_interface(settings: Settings) -> None:
    """The interface holding the node IP (a /32: no route to anything else)."""
    _run(["ip", "link", "add", DUMMY, "type", "bridge"])
    _run(["ip", "addr", "add", f"{settings.node_ip}/32", "dev", DUMMY])
    _run(["ip", "link", "set", DUMMY, "up"])


def install_guard(settings: Settings) -> None:
    """Drop packets for the cluster's addresses that come from outside the machine,
    and packets from pods to anything outside the cluster (nothing out there is
    theirs to reach: without masquerade they would leave with pod addresses); let
    pods reach each other whatever the FORWARD policy."""
    rules = [
        f"-A {GUARD_CHAIN} -i lo -j RETURN",
        # pods reach the cluster (pods, services, the node) and nothing else
        f"-A {GUARD_CHAIN} -i {BRIDGE} -d {settings.pod_cidr} -j RETURN",
        f"-A {GUARD_CHAIN} -i {BRIDGE} -d {settings.service_cidr} -j RETURN",
        f"-A {GUARD_CHAIN} -i {BRIDGE} -d {settings.node_ip}/32 -j RETURN",
        f"-A {GUARD_CHAIN} -i {BRIDGE} -j DROP",
        f"-A {GUARD_CHAIN} -d {settings.node_ip}/32 -j DROP",
        f"-A {GUARD_CHAIN} -d {settings.pod_cidr} -j DROP",
        f"-A {GUARD_CHAIN} -d {settings.service_cidr} -j DROP",
        f"-I PREROUTING 1 -j {GUARD_CHAIN}",
    ]
    # Pod to pod (directly, or through a Service's DNAT) is forwarded from the bridge
    # back to it; Docker sets the FORWARD policy to DROP, which cut every connection
    # from one pod to another (the hello app's to its Redis timed out).
    forward = [f"-A {GUARD_CHAIN} -i {BRIDGE} -o {BRIDGE} -j ACCEPT",
               f"-I FORWARD 1 -j {GUARD_CHAIN}"]
    script = (f"*raw\n:{GUARD_CHAIN} - [0:0]\n" + "\n".join(rules) + "\nCOMMIT\n"
              f"*filter\n:{GUARD_CHAIN} - [0:0]\n" + "\n".join(forward) + "\nCOMMIT\n")
    _run(["iptables-restore", "--noflush"], stdin=script)


def read_sysctls() -> dict[str, str]:
    """The values now of the sysctls the cluster sets (to restore at stop)."""
    return {key: (Path("/proc/sys") / key).read_text().strip() for key in SYSCTLS
            if (Path("/proc/sys") / key).exists()}


def set_sysctls() -> None:
    """Set what the cluster needs."""
    for key, value in SYSCTLS.items():
        path = Path("/proc/sys") / key
        if path.exists() and path.read_text().strip() != value:
            path.write_text(value)


def restore_sysctls(before: dict[str, str]) -> None:
    """Put back what we changed, unless dockerd now runs (it needs forwarding on)."""
    if _dockerd_running():
        return
    for key, value in before.items():
        path = Path("/proc/sys") / key
        if path.exists() and path.read_text().strip() != value:
            path.write_text(value)


def _dockerd_running() -> bool:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "dockerd":
                return True
        except OSError:
            continue
    return False


def remove_links() -> None:
    """Remove the pods' veths, the bridge and the dummy interface, if present."""
    for link in links():
        name = link.get("ifname", "")
        if link.get("master") == BRIDGE or name in (BRIDGE, DUMMY):
            _run(["ip", "link", "delete", name], check=False)


def our_links() -> list[str]:
    """Interfaces of the cluster still present (the bridge, the dummy, the pods' veths)."""
    return sorted(link["ifname"] for link in links()
                  if link.get("ifname") in (BRIDGE, DUMMY) or link.get("master") == BRIDGE)


def iptables_chains(family: str = "4") -> dict[str, list[str]]:
    """Our chains by table (``KUBE-*``, ``CNI-*``, the guard) for IPv4 or IPv6."""
    tool = "iptables-save" if family == "4" else "ip6tables-save"
    if shutil.which(tool) is None:
        return {}
    found: dict[str, list[str]] = {}
    table = ""
    for line in _run([tool], check=False).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and OUR_CHAIN.match(line[1:].split()[0]):
            found.setdefault(table, []).append(line[1:].split()[0])
    return found


def remove_chains(family: str = "4") -> None:
    """Delete our chains and every rule that jumps to them, in every table.

    One iptables-restore per table (atomic, fast with hundreds of KUBE-SVC
    chains); if it is refused, rule by rule, ignoring what is already gone."""
    save, restore, tool = (("iptables-save", "iptables-restore", "iptables") if family == "4"
                           else ("ip6tables-save", "ip6tables-restore", "ip6tables"))
    if shutil.which(save) is None:
        return
    tables: dict[str, list[str]] = {}
    chains: dict[str, list[str]] = {}
    table = ""
    for line in _run([save], check=False).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
            tables[table], chains[table] = [], []
        elif line.startswith(":") and OUR_CHAIN.match(line[1:].split()[0]):
            chains[table].append(line[1:].split()[0])
        elif line.startswith("-A "):
            parts = line.split()
            owner = parts[1]
            target = _target(parts)
            if not OUR_CHAIN.match(owner) and target and OUR_CHAIN.match(target):
                tables[table].append("-D" + line[2:])
    for table, ours in chains.items():
        deletes = tables[table]
        if not ours and not deletes:
            continue
        script = "\n".join([f"*{table}", *deletes, *(f"-F {c}" for c in ours),
                            *(f"-X {c}" for c in ours), "COMMIT", ""])
        if _run([restore, "--noflush"], check=False, stdin=script).returncode == 0:
            continue
        for delete in deletes:
            _run([tool, "-t", table, *shlex.split(delete)], check=False)
        for flag in ("-F", "-X"):
            for chain in ours:
                _run([tool, "-t", table, flag, chain], check=False)


def _target(parts: list[str]) -> str | None:
    for flag in ("-j", "-g"):
        if flag in parts:
            index = parts.index(flag)
            if index + 1 < len(parts):
                return parts[index + 1]
    return None


def all_nft_tables() -> list[str]:
    """Every nftables table, as ``family name`` (iptables-nft's are ``ip filter``...)."""
    if shutil.which("nft") is None:
        return []
    out = _run(["nft", "list", "tables"], check=False).stdout
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("table ")]


def nft_tables() -> list[str]:
    """kube-proxy's nftables tables (``ip kube-proxy``, ``ip6 kube-proxy``), if any."""
    return [t for t in all_nft_tables() if t.split()[-1] in NFT_TABLES]


def remove_nft_tables() -> None:
    for table in nft_tables():
        _run(["nft", "delete", "table", *table.split()], check=False)


def _nft_rule_count(table: str) -> int:
    out = _run(["nft", "-j", "list", "table", *table.split()], check=False).stdout
    try:
        return sum(1 for item in json.loads(out).get("nftables", []) if "rule" in item)
    except ValueError:
        return -1


def remove_new_empty_tables(before: list[str]) -> None:
    """Delete tables that appeared since ``before`` and hold no rule.

    iptables-nft creates a table (ip raw, ip6 nat...) on first use and never
    removes it; after our chains are gone, the tables the cluster brought are
    empty shells. A table with a rule in it (Docker's, say) is left alone."""
    for table in set(all_nft_tables()) - set(before):
        if _nft_rule_count(table) == 0:
            _run(["nft", "delete", "table", *table.split()], check=False)
