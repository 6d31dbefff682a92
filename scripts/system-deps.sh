#!/bin/sh
# Make sure the system programs the embedded stack runs exist: redis-server
# and haproxy (and python3-venv to make .venv). As root on Debian/Ubuntu,
# install what is missing; otherwise say, in one line, what to install.
set -eu
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing="$missing python3-venv"
# The Compose path is optional: for `make test` (SCALECHECK_WITH_DOCKER=1), as
# root on Debian, bring what its tests need (an engine, Compose v1, debootstrap
# for a base image without a registry). `make demo` never installs Docker.
optional=""
if [ "${SCALECHECK_WITH_DOCKER:-}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || optional="$optional docker.io"
    command -v docker-compose >/dev/null 2>&1 || optional="$optional docker-compose"
    command -v debootstrap >/dev/null 2>&1 || optional="$optional debootstrap"
    # the two-node Swarm test: a second engine in a network namespace of its own
    command -v ip >/dev/null 2>&1 || optional="$optional iproute2"
    command -v nsenter >/dev/null 2>&1 || optional="$optional util-linux"
fi
# The throwaway Kubernetes (tests/kubernetes, `make kube-build`): the runtime,
# the CNI plugins and etcd from Debian; the components themselves are built with Go.
if [ "${SCALECHECK_WITH_KUBE:-}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    command -v etcd >/dev/null 2>&1 || optional="$optional etcd-server"
    command -v containerd >/dev/null 2>&1 || optional="$optional containerd"
    command -v runc >/dev/null 2>&1 || optional="$optional runc"
    [ -x /usr/lib/cni/bridge ] || optional="$optional containernetworking-plugins"
    command -v iptables >/dev/null 2>&1 || optional="$optional iptables"
    command -v nft >/dev/null 2>&1 || optional="$optional nftables"
    command -v ip >/dev/null 2>&1 || optional="$optional iproute2"
fi
if [ -n "$optional" ]; then
    echo "scalecheck: installing Debian packages for the Docker/Kubernetes tests:$optional"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get -o DPkg::Lock::Timeout=600 update -qq \
        && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $optional >/dev/null; } \
        || echo "scalecheck: could not install$optional; those tests will be skipped" >&2
    # The throwaway cluster runs its own etcd and containerd: not the system's.
    for svc in etcd; do
        if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
    done
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scalecheck: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # Debian starts services on install where it can; the harness runs its own.
    for svc in redis-server haproxy; do
        if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
    done
    exit 0
fi
echo "scalecheck: missing:$missing — install with: sudo apt-get install$missing" >&2
exit 1
