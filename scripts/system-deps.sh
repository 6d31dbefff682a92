#!/bin/sh
# Make sure the system programs the stacks run exist: redis-server and haproxy (and
# python3-venv to make .venv) always; for `make test` (SCALECHECK_WITH_DOCKER=1) also what
# the Docker tests need. As root on Debian/Ubuntu, install what is missing; otherwise say,
# in one line, what to install.
#
# apt-get waits for a dpkg lock another apt holds (up to 10 minutes) rather than giving
# up, and the package index is fetched a second time if the first try fails. Under CI=true
# a package that still cannot be installed fails `make test`, naming it: a green CI must
# never mean that a part went untested. Elsewhere the Docker part is optional and its
# tests skip, saying why.
set -eu
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing="$missing python3-venv"

optional=""
if [ "${SCALECHECK_WITH_DOCKER:-}" = 1 ]; then
    command -v dockerd >/dev/null 2>&1 || optional="$optional docker.io"
    command -v docker-compose >/dev/null 2>&1 || optional="$optional docker-compose"
    command -v debootstrap >/dev/null 2>&1 || optional="$optional debootstrap"
    # the two-node Swarm test: a second engine in a network namespace of its own
    command -v ip >/dev/null 2>&1 || optional="$optional iproute2"
    command -v nsenter >/dev/null 2>&1 || optional="$optional util-linux"
fi
# The throwaway Kubernetes (tests/kubernetes, `make kube-build`): the runtime, the CNI
# plugins and etcd from Debian; the components themselves are built with Go.
if [ "${SCALECHECK_WITH_KUBE:-}" = 1 ]; then
    command -v etcd >/dev/null 2>&1 || optional="$optional etcd-server"
    command -v containerd >/dev/null 2>&1 || optional="$optional containerd"
    command -v runc >/dev/null 2>&1 || optional="$optional runc"
    [ -x /usr/lib/cni/bridge ] || optional="$optional containernetworking-plugins"
    command -v iptables >/dev/null 2>&1 || optional="$optional iptables"
    command -v nft >/dev/null 2>&1 || optional="$optional nftables"
    command -v ip >/dev/null 2>&1 || optional="$optional iproute2"
fi

in_ci() { case "${CI:-}" in true|1|yes) return 0 ;; esac; return 1; }
say() { echo "scalecheck: $*" >&2; }

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

APT="apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=2"
index_fresh=""
update_index() {
    [ -n "$index_fresh" ] && return 0
    # shellcheck disable=SC2086
    $APT update -qq || { say "the package index could not be read; trying once more"; sleep 5; $APT update -qq; } \
        || return 1
    index_fresh=1
}

# install PACKAGES...: each on its own, so that a failure names the one that failed; from
# the index the machine has, and from a fresh one if that does not know the package.
install() {
    export DEBIAN_FRONTEND=noninteractive
    failed=""
    for pkg in "$@"; do
        # shellcheck disable=SC2086
        $APT install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 && continue
        update_index || { failed="$failed $pkg"; continue; }
        # shellcheck disable=SC2086
        $APT install -y -qq --no-install-recommends "$pkg" >/dev/null || failed="$failed $pkg"
    done
    [ -z "$failed" ]
}

if [ -n "$missing" ]; then
    if ! can_install; then
        say "missing:$missing — install with: sudo apt-get install$missing"
        exit 1
    fi
    say "installing Debian packages:$missing"
    # shellcheck disable=SC2086
    install $missing || { say "could not install:$failed"; exit 1; }
    # Debian starts services on install where it can; the harness runs its own.
    for svc in redis-server haproxy; do
        if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
    done
fi

if [ -n "$optional" ]; then
    if ! can_install; then
        if in_ci; then say "CI=true and the Docker and Kubernetes tests need:$optional (as root, with apt-get)"; exit 1; fi
        say "the Docker and Kubernetes tests will be skipped: they need$optional (installed as root with apt-get)"
        exit 0
    fi
    say "installing Debian packages for the Docker and Kubernetes tests:$optional"
    # shellcheck disable=SC2086
    if ! install $optional; then
        if in_ci; then say "CI=true and a package the tests need could not be installed:$failed"; exit 1; fi
        say "could not install$failed; the tests that need it will be skipped"
    fi
    # The throwaway cluster runs its own etcd and containerd, not the system's.
    if command -v service >/dev/null 2>&1; then service etcd stop >/dev/null 2>&1 || true; fi
fi
exit 0
