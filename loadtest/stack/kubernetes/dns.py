"""Ask the cluster's DNS (``kube cluster-dns`` on the node IP) for a name.

start() waits until it answers for ``kubernetes.default``; a test resolves a
Service. One UDP query built by hand: the standard library has no resolver
that can be pointed at one server.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct


def _query(name: str, ident: int) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.strip(".").split("."))
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(
        ">HH", 1, 1)


def resolve(server: str, name: str, port: int = 53, timeout: float = 1.0) -> list[str]:
    """The A records ``server`` gives for ``name`` (empty if none, or no answer)."""
    ident = int.from_bytes(os.urandom(2), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(_query(name, ident), (server, port))
        try:
            reply = sock.recv(1500)
        except OSError:
            return []
    got_id, flags, _, answers = struct.unpack(">HHHH", reply[:8])
    if got_id != ident or flags & 0x000F:
        return []
    offset = len(_query(name, ident))  # header and question, echoed as sent
    found = []
    for _ in range(answers):
        offset += 2 if reply[offset] & 0xC0 == 0xC0 else reply.index(b"\0", offset) + 1 - offset
        rtype, _, _, length = struct.unpack(">HHIH", reply[offset:offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            found.append(str(ipaddress.IPv4Address(reply[offset:offset + 4])))
        offset += length
    return found
