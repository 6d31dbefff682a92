"""Certificates and kubeconfigs for a throwaway cluster, made fresh at each start.

Every component authenticates with a client certificate from one CA of the
cluster's own, as kubeadm sets a cluster up, so that RBAC and the Node
authorizer work as on a real cluster (the HPA controller, for one, runs under
its own service account). Keys are ECDSA P-256: quick to make, accepted by every
component. Certificates live a week: the cluster lives minutes.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=7)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class Authority:
    """A CA: signs the certificates of one cluster."""

    def __init__(self, directory: Path, name: str, common_name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        subject = _name(common_name)
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
        _write_key(self.key, self.pair.key)
        self.pair.cert.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, common_name: str, organizations: tuple[str, ...] = (),
              client: bool = True, server: bool = False, dns: tuple[str, ...] = (),
              ips: tuple[str, ...] = ()) -> KeyPair:
        """Sign a certificate for ``common_name`` (a user, or a server's names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name, organizations))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True,
                                         key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
        )
        names = [x509.DNSName(d) for d in dns] + [
            x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        pair = KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        _write_key(key, pair.key)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair


def service_account_keys(directory: Path) -> KeyPair:
    """The key that signs service-account tokens (``cert`` holds its public key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    _write_key(key, pair.key)
    pair.cert.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pair


def write_kubeconfig(path: Path, server: str, ca: Path, pair: KeyPair, user: str) -> Path:
    """A kubeconfig with the certificates inlined, so it can be copied anywhere.

    JSON is YAML, so every Kubernetes client (and the ``kubernetes`` Python
    package) reads it as is."""
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "scalecheck", "cluster": {
            "server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(pair.cert), "client-key-data": b64(pair.key)}}],
        "contexts": [{"name": "scalecheck", "context": {"cluster": "scalecheck", "user": user}}],
        "current-context": "scalecheck",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)
    return path


# Who each kubeconfig speaks for. The groups are the ones RBAC's bootstrap
# bindings name (system:nodes, system:kube-proxy's user, ...); the admin and
# metrics-server are system:masters (metrics-server also delegates authn/authz
# and reads the request-header CA, for which it would need three bindings).
USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kube-proxy": ("system:kube-proxy", ()),
    "metrics-server": ("system:metrics-server", ("system:masters",)),
}


@dataclass(frozen=True)
class Credentials:
    """Every certificate and kubeconfig one cluster uses, by role."""

    ca: KeyPair
    front_proxy_ca: KeyPair
    service_account: KeyPair
    apiserver: KeyPair
    apiserver_kubelet_client: KeyPair
    front_proxy_client: KeyPair
    kubelet_serving: KeyPair
    metrics_server_serving: KeyPair
    kubeconfigs: dict[str, Path]


def make_credentials(pki_dir: Path, kubeconfig_dir: Path, server: str, node_name: str,
                     node_ip: str, service_ip: str) -> Credentials:
    """A new CA and everything it signs, for the apiserver at ``server``."""
    ca = Authority(pki_dir, "ca", "scalecheck-kubernetes-ca")
    front = Authority(pki_dir, "front-proxy-ca", "scalecheck-front-proxy-ca")
    api_dns = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local", "localhost", node_name)
    kubeconfigs = {
        role: write_kubeconfig(kubeconfig_dir / f"{role}.conf", server, ca.pair.cert,
                               ca.issue(role, cn, orgs), cn)
        for role, (cn, orgs) in USERS.items()
    }
    node_user = f"system:node:{node_name}"
    kubeconfigs["kubelet"] = write_kubeconfig(
        kubeconfig_dir / "kubelet.conf", server, ca.pair.cert,
        ca.issue("kubelet-client", node_user, ("system:nodes",)), node_user)
    return Credentials(
        ca=ca.pair, front_proxy_ca=front.pair,
        service_account=service_account_keys(pki_dir),
        apiserver=ca.issue("apiserver", "kube-apiserver", client=False, server=True,
                           dns=api_dns, ips=(node_ip, service_ip, "127.0.0.1")),
        apiserver_kubelet_client=ca.issue("apiserver-kubelet-client",
                                          "kube-apiserver-kubelet-client", ("system:masters",)),
        front_proxy_client=front.issue("front-proxy-client", "front-proxy-client"),
        kubelet_serving=ca.issue("kubelet-serving", node_name, client=False, server=True,
                                 dns=(node_name, "localhost"), ips=(node_ip, "127.0.0.1")),
        metrics_server_serving=ca.issue(
            "metrics-server-serving", "metrics-server", client=False, server=True,
            dns=("metrics-server.kube-system.svc", "metrics-server.kube-system"),
            ips=(node_ip,)),
        kubeconfigs=kubeconfigs,
    )
