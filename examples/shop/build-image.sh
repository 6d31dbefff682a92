#!/bin/sh
# Build scalecheck/shop:latest where no image registry is reachable, the way
# scripts/docker-images.sh builds the hello app: on the local Debian base image
# (scalecheck/base:bookworm, made by that script when it is missing) and a
# wheelhouse downloaded on the host for the image's own Python.
#
#   sh examples/shop/build-image.sh
#   BASE_IMAGE=python:3.11-slim sh examples/shop/build-image.sh   # with a registry
#
# The build context is a temporary copy of this folder plus the wheels: the
# source tree is left as it was. Needs a running dockerd (and root, the first
# time, for debootstrap).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BASE=${BASE_IMAGE:-scalecheck/base:bookworm}
IMAGE=${SHOP_IMAGE:-scalecheck/shop:latest}
PYTHON=${PYTHON:-$root/.venv/bin/python}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/scalecheck

docker info >/dev/null 2>&1 || { echo "shop: no Docker engine answers (start dockerd)" >&2; exit 2; }
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    if [ "$BASE" = scalecheck/base:bookworm ]; then
        (cd "$root" && PYTHON="$PYTHON" sh scripts/docker-images.sh)
    else
        docker pull --quiet "$BASE" >/dev/null
    fi
fi

# Wheels for the image's Python, cached by its version and the requirements.
pyv=$(docker run --rm "$BASE" python3 -c 'import platform; print(platform.python_version())')
key=$(sha1sum < "$here/requirements.txt" | cut -c1-12)
wheels="$CACHE/wheels-$pyv-$key"
if [ ! -f "$wheels/.complete" ]; then
    echo "shop: building the wheelhouse for Python $pyv"
    mkdir -p "$wheels"
    "$PYTHON" -m pip download --quiet --only-binary=:all: --python-version "$pyv" \
        -d "$wheels" -r "$here/requirements.txt"
    # The host's pip judges markers such as python_full_version by the host's
    # Python: ask the image's own pip what it still misses (bounded).
    for _round in 1 2 3 4 5; do
        missing=$(docker run --rm -v "$wheels:/w:ro" -v "$here/requirements.txt:/r.txt:ro" \
            "$BASE" sh -c 'python3 -m venv /tmp/v >/dev/null && /tmp/v/bin/pip install \
            --dry-run --no-index --find-links /w -r /r.txt 2>&1' \
            | sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' | head -n1)
        [ -z "$missing" ] && break
        echo "shop: the image's Python also needs $missing"
        "$PYTHON" -m pip download --quiet --only-binary=:all: --no-deps -d "$wheels" "$missing"
    done
    touch "$wheels/.complete"
fi

context=$(mktemp -d "${TMPDIR:-/tmp}/shop-image.XXXXXX")
trap 'rm -rf "$context"' EXIT INT TERM
cp -R "$here/Dockerfile" "$here/.dockerignore" "$here/requirements.txt" "$here/shop" "$context/"
mkdir "$context/wheels"
cp "$wheels"/*.whl "$context/wheels/"
previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build --quiet --force-rm --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_INSTALL_ARGS="--no-index --find-links /tmp/install" \
    -t "$IMAGE" "$context" >/dev/null
# A rebuild leaves the image it replaced untagged: remove it (unless a container uses it).
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
echo "shop: image ready: $IMAGE (on $BASE, Python $pyv)"
